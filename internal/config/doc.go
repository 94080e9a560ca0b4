// Package config builds the configuration of `weft agent`.
//
// Data flow: Default() gives the built-in defaults; Parse overlays a YAML
// document on them (Load does the same for a file, then validates); FromCLI
// loads the file named by --config and overlays every flag or WEFT_*
// environment variable that is set, then validates the result as a whole.
// Nothing here touches the network or the kernel: the agent acts on the
// returned Config.
//
// Precedence, highest first (see Precedence):
//
//  1. command-line flags (--cluster-cidr, --join, ...)
//  2. WEFT_* environment variables (WEFT_CLUSTER_CIDR, WEFT_JOIN, ...)
//  3. the YAML file (--config / WEFT_CONFIG, default /etc/weft/weft.yaml)
//  4. built-in defaults (Default)
//
// A list or map (join, labels) given at a higher level replaces the lower
// one whole; the levels are not merged element by element.
//
// The YAML file is decoded strictly: unknown or mis-cased keys, duplicate
// keys, values of the wrong type (an unquoted number where a string is
// expected, say) and more than one document are errors. A key whose value
// is empty (null) keeps its default. Every error names the field by its
// YAML name and quotes the offending value.
package config

// Precedence explains where settings come from. It is written for the help
// text of `weft agent`.
const Precedence = "Settings come from, highest first: command-line flags, " +
	"WEFT_* environment variables (named after the flag: --cluster-cidr is WEFT_CLUSTER_CIDR), " +
	"the YAML config file (--config, default " + DefaultPath + "; a missing default file is ignored), " +
	"and built-in defaults. A list or map (--join, --labels) given at a higher level replaces the lower one whole."
