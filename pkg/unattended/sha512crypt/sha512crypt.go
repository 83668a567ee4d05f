// Package sha512crypt implements the SHA-512 based crypt(3) scheme ("$6$",
// Ulrich Drepper's specification) in pure Go, for the password hashes that
// Linux installers and cloud-init write to /etc/shadow.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package sha512crypt

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// DefaultRounds is what the scheme uses when a hash names no rounds.
	DefaultRounds = 5000
	// MinRounds is the fewest rounds a hash may name.
	MinRounds = 1000
	// MaxRounds is the most rounds a hash may name.
	MaxRounds = 999999999
	// MaxSaltLen is the longest salt the scheme uses; longer ones are cut.
	MaxSaltLen = 16
	prefix     = "$6$"
	alphabet   = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// ErrMalformed reports a string that is not a "$6$" hash.
var ErrMalformed = errors.New("sha512crypt: malformed hash")

// Hash hashes password with a fresh random 16-character salt and the default rounds.
func Hash(password string) (string, error) {
	salt, err := NewSalt()
	if err != nil {
		return "", err
	}
	return Crypt(password, prefix+salt), nil
}

// NewSalt returns 16 random characters from the crypt alphabet.
func NewSalt() (string, error) {
	var b [MaxSaltLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sha512crypt: %w", err)
	}
	for i := range b {
		b[i] = alphabet[b[i]&0x3f]
	}
	return string(b[:]), nil
}

// Crypt hashes password with the settings in setting, which is "$6$salt",
// "$6$rounds=N$salt" or a whole hash (its digest part is ignored), as
// crypt(3) does. The salt is cut to 16 characters and rounds are clamped to
// [1000, 999999999]; "rounds=" stays in the output only when it was given.
func Crypt(password, setting string) string {
	salt, rounds, explicit := parseSetting(setting)
	out := prefix
	if explicit {
		out += "rounds=" + strconv.Itoa(rounds) + "$"
	}
	return out + salt + "$" + encode(digest([]byte(password), []byte(salt), rounds))
}

// Verify tells whether password matches hash, in constant time over the digest.
func Verify(password, hash string) (bool, error) {
	if !strings.HasPrefix(hash, prefix) || strings.Count(hash, "$") < 3 {
		return false, ErrMalformed
	}
	got := Crypt(password, hash)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1, nil
}

func parseSetting(s string) (salt string, rounds int, explicit bool) {
	s = strings.TrimPrefix(s, prefix)
	rounds = DefaultRounds
	if rest, ok := strings.CutPrefix(s, "rounds="); ok {
		if n, tail, found := strings.Cut(rest, "$"); found {
			if r, err := strconv.ParseUint(n, 10, 64); err == nil {
				rounds, explicit = clamp(r), true
				s = tail
			}
		}
	}
	salt, _, _ = strings.Cut(s, "$")
	if len(salt) > MaxSaltLen {
		salt = salt[:MaxSaltLen]
	}
	return salt, rounds, explicit
}

func clamp(r uint64) int {
	switch {
	case r < MinRounds:
		return MinRounds
	case r > MaxRounds:
		return MaxRounds
	}
	return int(r)
}

// digest runs steps 1-21 of the specification.
func digest(key, salt []byte, rounds int) []byte {
	// B = SHA512(key salt key)
	h := sha512.New()
	h.Write(key)
	h.Write(salt)
	h.Write(key)
	b := h.Sum(nil)

	// A = SHA512(key salt B-repeated-to-len(key), then per bit of len(key): B or key)
	h.Reset()
	h.Write(key)
	h.Write(salt)
	h.Write(repeat(b, len(key)))
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(key)
		}
	}
	a := h.Sum(nil)

	// P: SHA512 of the key repeated len(key) times, stretched to len(key)
	h.Reset()
	for range len(key) {
		h.Write(key)
	}
	p := repeat(h.Sum(nil), len(key))

	// S: SHA512 of the salt repeated 16+A[0] times, stretched to len(salt)
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := repeat(h.Sum(nil), len(salt))

	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}
	return c
}

// repeat concatenates copies of src until n bytes.
func repeat(src []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, src[:min(len(src), n-len(out))]...)
	}
	return out
}

// order is the byte permutation the specification prescribes for the output,
// three bytes to four characters.
var order = [21][3]int{
	{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
	{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13},
	{56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
}

func encode(d []byte) string {
	var sb strings.Builder
	put := func(w uint32, n int) {
		for range n {
			sb.WriteByte(alphabet[w&0x3f])
			w >>= 6
		}
	}
	for _, o := range order {
		put(uint32(d[o[0]])<<16|uint32(d[o[1]])<<8|uint32(d[o[2]]), 4)
	}
	put(uint32(d[63]), 2)
	return sb.String()
}
