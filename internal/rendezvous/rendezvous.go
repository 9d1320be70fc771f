package rendezvous

import "hash/fnv"

// Pick returns the index in ids of the member key goes to; -1 when ids is
// empty.
func Pick(key string, ids []string) int {
	best := -1
	var top uint64
	for i, id := range ids {
		if s := Score(key, id); best < 0 || s > top {
			best, top = i, s
		}
	}
	return best
}

// Score is FNV-1a over key and id, finished with splitmix64's mixer so
// that near ids (node-1, node-2) score independently.
func Score(key, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(id))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
