package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load reads the resource files at path (a file, or a directory searched
// recursively for *.yaml, *.yml and *.json files, in lexical order) and
// resolves them into a Set. Errors name the file, document, object and
// field; every error found is returned, joined.
func Load(path string) (*Set, error) {
	objs, err := LoadObjects(path)
	if err != nil {
		return nil, err
	}
	return NewSet(objs)
}

// LoadObjects reads and decodes the resource files at path, as Load does,
// without resolving them.
func LoadObjects(path string) ([]Object, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policy resources: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read policy resources in %s: %w", path, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("read policy resources in %s: no .yaml, .yml or .json files", path)
		}
	}
	var objs []Object
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("read policy resources: %w", err))
			continue
		}
		o, err := Decode(f, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}
