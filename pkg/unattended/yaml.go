package unattended

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// A tiny YAML emitter, enough for cloud-config. Every string is written
// double-quoted with escapes, so no user value can start a comment, a tag,
// an anchor, a new key or a new document, whatever it contains. The output
// is read by PyYAML (cloud-init, Subiquity); the tests parse it back there.

// ymap is a mapping that keeps its key order.
type ymap []ykv

type ykv struct {
	k string
	v any // string, bool, int, ymap, []any, []string
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func emitYAML(sb *strings.Builder, m ymap) {
	emitMap(sb, m, 0)
}

func emitMap(sb *strings.Builder, m ymap, indent int) {
	for i, kv := range m {
		if i > 0 {
			sb.WriteString(strings.Repeat(" ", indent))
		}
		emitKey(sb, kv.k)
		sb.WriteByte(':')
		emitValue(sb, kv.v, indent)
	}
}

func emitKey(sb *strings.Builder, k string) {
	if plainKeyRE.MatchString(k) && !reservedScalar(k) {
		sb.WriteString(k)
		return
	}
	sb.WriteString(quoteYAML(k))
}

// reservedScalar is a plain word YAML 1.1 reads as something else than a string.
func reservedScalar(s string) bool {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return true
	}
	return false
}

// emitValue writes what follows "key:" or "-": a scalar on the same line,
// or a nested block on the next lines, indented by two more.
func emitValue(sb *strings.Builder, v any, indent int) {
	switch t := v.(type) {
	case ymap:
		if len(t) == 0 {
			sb.WriteString(" {}\n")
			return
		}
		sb.WriteByte('\n')
		sb.WriteString(strings.Repeat(" ", indent+2))
		emitMap(sb, t, indent+2)
	case []string:
		l := make([]any, len(t))
		for i, s := range t {
			l[i] = s
		}
		emitValue(sb, l, indent)
	case []any:
		if len(t) == 0 {
			sb.WriteString(" []\n")
			return
		}
		sb.WriteByte('\n')
		emitList(sb, t, indent+2)
	default:
		sb.WriteByte(' ')
		sb.WriteString(scalarYAML(v))
		sb.WriteByte('\n')
	}
}

func emitList(sb *strings.Builder, l []any, indent int) {
	for _, item := range l {
		sb.WriteString(strings.Repeat(" ", indent))
		sb.WriteByte('-')
		switch t := item.(type) {
		case ymap:
			if len(t) == 0 {
				sb.WriteString(" {}\n")
				continue
			}
			sb.WriteByte(' ')
			emitMap(sb, t, indent+2)
		case []any, []string:
			// A list inside a list is written in flow style: [ "a", "b" ].
			sb.WriteByte(' ')
			sb.WriteString(flowList(t))
			sb.WriteByte('\n')
		default:
			sb.WriteByte(' ')
			sb.WriteString(scalarYAML(item))
			sb.WriteByte('\n')
		}
	}
}

func flowList(v any) string {
	var items []string
	switch t := v.(type) {
	case []string:
		for _, s := range t {
			items = append(items, quoteYAML(s))
		}
	case []any:
		for _, s := range t {
			items = append(items, scalarYAML(s))
		}
	}
	return "[" + strings.Join(items, ", ") + "]"
}

func scalarYAML(v any) string {
	switch t := v.(type) {
	case string:
		return quoteYAML(t)
	case bool:
		if t {
			return "true"
		}
		return "false"
	case int:
		return fmt.Sprint(t)
	}
	panic(fmt.Sprintf("unattended: no YAML form for %T", v))
}

// quoteYAML writes s as a double-quoted YAML scalar. Anything PyYAML would
// not take literally inside double quotes is escaped: backslash, quote,
// control characters, the YAML 1.1 line breaks U+0085, U+2028 and U+2029,
// byte order marks, surrogates and non-characters.
func quoteYAML(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == utf8.RuneError:
			sb.WriteString(`\uFFFD`)
		case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff && r != 0x2028 && r != 0x2029,
			r >= 0xe000 && r <= 0xfffd && r != 0xfeff, r >= 0x10000 && r <= 0x10ffff:
			sb.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&sb, `\x%02X`, r)
		default:
			fmt.Fprintf(&sb, `\u%04X`, r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
