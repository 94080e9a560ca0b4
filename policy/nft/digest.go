package nft

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// digestSeed seeds the hashes of digests. Set once when the process starts
// and never changed: digests are only compared within one process, and a
// seed nobody outside knows keeps policy authors from crafting collisions.
var digestSeed = maphash.MakeSeed()

// Chunking of a set's elements: a chunk ends after an element whose hash
// has its low chunkBits bits zero, or at maxChunk elements. The ends
// depend on the elements only, not on their positions, so an element
// added or removed changes the chunk around it and leaves the others
// equal (content-defined chunking, as rsync and backup tools do).
const (
	chunkBits = 5 // about 32 elements per chunk
	maxChunk  = 256
)

// digests summarise a Ruleset's sets and chains so that diff can skip what
// did not change without comparing it element by element: at 10,000
// endpoints that comparison costs more than the kernel's transaction.
// They are valid only for the Version they were made for.
type digests struct {
	version string
	sets    map[string][]chunk
	chains  map[string]uint64
}

// chunk is a run of consecutive elements of a set: how many and a hash of
// them.
type chunk struct {
	n    int
	hash uint64
}

// digestsOf returns the digests of rs (whose Version must be set).
func digestsOf(rs *Ruleset) *digests {
	d := &digests{version: rs.Version, sets: make(map[string][]chunk, len(rs.Sets)),
		chains: make(map[string]uint64, len(rs.Chains))}
	var h maphash.Hash
	h.SetSeed(digestSeed)
	for i := range rs.Sets {
		s := &rs.Sets[i]
		var chunks []chunk
		var cur maphash.Hash
		cur.SetSeed(digestSeed)
		n := 0
		var buf [8]byte
		for j := range s.Elements {
			eh := elementHash(&h, &s.Elements[j])
			binary.LittleEndian.PutUint64(buf[:], eh)
			cur.Write(buf[:])
			n++
			if eh&(1<<chunkBits-1) == 0 || n == maxChunk || j == len(s.Elements)-1 {
				chunks = append(chunks, chunk{n: n, hash: cur.Sum64()})
				cur.Reset()
				n = 0
			}
		}
		d.sets[s.Name] = chunks
	}
	for i, c := range rs.Chains {
		h.Reset()
		for j, r := range c.Rules {
			if i == 0 && j == 0 {
				r.Comment = "" // the version, which changes with everything
			}
			h.WriteString(r.String())
			h.WriteByte('\n')
		}
		d.chains[c.Name] = h.Sum64()
	}
	return d
}

// elementHash returns a hash of e's key, verdict and comment.
func elementHash(h *maphash.Hash, e *Element) uint64 {
	h.Reset()
	for _, r := range e.Key {
		h.WriteByte(byte(len(r.From)))
		h.Write(r.From)
		h.Write(r.To)
	}
	h.WriteByte(0)
	if e.Verdict != nil {
		h.WriteByte(byte(e.Verdict.Kind))
		h.WriteString(e.Verdict.Chain)
	}
	h.WriteByte(0)
	h.WriteString(e.Comment)
	return h.Sum64()
}

// validDigests returns rs's digests if they were made for its version.
func validDigests(rs *Ruleset) *digests {
	if rs.digests == nil || rs.digests.version != rs.Version {
		return nil
	}
	return rs.digests
}

// window returns how many elements at the head and at the tail of a and b
// lie in equal chunks, by their chunk lists; ok is false when the chunk
// lists are missing or do not add up to the element counts.
func window(ca, cb []chunk, na, nb int) (head, tail int, ok bool) {
	sum := func(cs []chunk) int {
		t := 0
		for _, c := range cs {
			t += c.n
		}
		return t
	}
	if ca == nil && na > 0 || cb == nil && nb > 0 || sum(ca) != na || sum(cb) != nb {
		return 0, 0, false
	}
	i := 0
	for i < len(ca) && i < len(cb) && ca[i] == cb[i] {
		head += ca[i].n
		i++
	}
	j := 0
	for j < len(ca)-i && j < len(cb)-i && ca[len(ca)-1-j] == cb[len(cb)-1-j] {
		tail += ca[len(ca)-1-j].n
		j++
	}
	return head, tail, true
}

// sameChunks reports whether two chunk lists are equal.
func sameChunks(a, b []chunk) bool { return slices.Equal(a, b) }
