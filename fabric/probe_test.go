package fabric
import ("testing";"time";"encoding/hex")
func TestProbeSlow(t *testing.T){
  data,_ := hex.DecodeString("d03a79b0aa46e9f932d26be3b85635c9a84054a6e88e01125dd83bdd2b5dc4c5df71c1f731a1e46ca5b3df1c76c6deed8c4c41a4a9c80ba8709053c6c92ebe18a4004c3cac0ed22576a1bd03bbabb9baf3b46d5eac14c53c3922e0694a15a87ff28c39abcff9139ffa43fe8b23258c8b3c5cf4ec12b409c0ab9c8636f05fe8ad4a3608b10fab1041964ac25a29561a853eb55a814b120739ed11cfb0a11271e9efa6b9410c37e5040d249056e9e020307b91b8326d")
  p, self, seed, others := subnetScenario(data)
  st := time.Now()
  d := Decide(p,self,seed,others)
  t.Log(time.Since(st), p, p.Size(), self, len(others), d)
  st = time.Now()
  subnetCheckDecide(t, data)
  t.Log(time.Since(st))
}
