package config
import ("os";"path/filepath";"testing";"time";"strconv";"strings")
func TestZZ(t *testing.T){
 fs,_ := filepath.Glob("/root/.cache/go-build/fuzz/github.com/weft-net/weft/internal/config/FuzzParse/*")
 for _, f := range fs {
  b,_ := os.ReadFile(f)
  lines := strings.SplitN(string(b), "\n", 3)
  s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
  if err != nil { t.Log(f, err); continue }
  st := time.Now()
  Parse([]byte(s))
  if d := time.Since(st); d > 50*time.Millisecond { t.Logf("%s %v %q", filepath.Base(f), d, s) }
 }
}
