package webhook

import "bytes"

// A minimal walker over JSON that has already been validated: it finds
// where values begin and end, so the parser reads the few fields it needs
// and keeps every event's bytes exactly as Meta sent them, without
// decoding anything twice or copying.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
// Most of a webhook body is string bytes, so it jumps from quote to quote
// (bytes.IndexByte is vectorised) and counts the backslashes before each.
func stringEnd(b []byte, i int) int {
	i++
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		k := i + j
		n := 0
		for m := k - 1; m >= i && b[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return k + 1
		}
		i = k + 1
	}
	return len(b)
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}

// eachField calls fn with the raw key (without quotes, as escaped in the
// source) and the value of every member of the object v. It reports false
// if v is not an object.
func eachField(v []byte, fn func(key, val []byte)) bool {
	if len(v) == 0 || v[0] != '{' {
		return false
	}
	i := skipSpace(v, 1)
	for i < len(v) && v[i] == '"' {
		ke := stringEnd(v, i)
		key := v[i+1 : ke-1]
		i = skipSpace(v, ke)
		i = skipSpace(v, i+1) // ':'
		ve := valueEnd(v, i)
		fn(key, v[i:ve])
		i = skipSpace(v, ve)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	return true
}

// eachElem calls fn with every element of the array v. It reports false if
// v is not an array.
func eachElem(v []byte, fn func(elem []byte)) bool {
	if len(v) == 0 || v[0] != '[' {
		return false
	}
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != ']' {
		ve := valueEnd(v, i)
		fn(v[i:ve])
		i = skipSpace(v, ve)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	return true
}
