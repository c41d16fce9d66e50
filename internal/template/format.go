package template

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errFormat is .NET's message (lower-cased, as Go errors are) for a malformed composite format string.
var errFormat = errors.New("input string was not in a correct format")

// formatNET implements .NET composite formatting as ARM's format() uses it:
// {index[,alignment][:formatString]} items, with {{ and }} for braces.
// Integers take the standard specifiers D, N, F, X and G (with a precision)
// and all-zero custom patterns such as 000; strings and booleans ignore the
// format string, as in .NET. Numbers use the invariant culture.
//
// grow is told the bytes about to be written, before they are: the text
// of f once, then each item, so that a short format repeating a long
// argument ({0}{0}{0}...) is stopped by the caller's budget as it grows. An
// error from grow is returned as it is.
func formatNET(f string, args []any, grow func(n int) error) (string, error) {
	if err := grow(len(f)); err != nil {
		return "", err
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch c {
		case '}':
			if i+1 < len(f) && f[i+1] == '}' {
				b.WriteByte('}')
				i++
				continue
			}
			return "", errFormat
		case '{':
			if i+1 < len(f) && f[i+1] == '{' {
				b.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				return "", errFormat
			}
			item := f[i+1 : i+end]
			i += end
			s, err := formatItem(item, args)
			if err != nil {
				return "", err
			}
			if err := grow(len(s)); err != nil {
				return "", err
			}
			b.WriteString(s)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func formatItem(item string, args []any) (string, error) {
	spec := ""
	if k := strings.IndexByte(item, ':'); k >= 0 {
		item, spec = item[:k], item[k+1:]
	}
	align := 0
	if k := strings.IndexByte(item, ','); k >= 0 {
		a, err := strconv.Atoi(strings.TrimSpace(item[k+1:]))
		if err != nil {
			return "", errFormat
		}
		if a > maxPad || a < -maxPad {
			return "", fmt.Errorf("the alignment %d is out of range", a)
		}
		item, align = item[:k], a
	}
	idx, err := strconv.Atoi(strings.TrimSpace(item))
	if err != nil || strings.TrimSpace(item) == "" || strings.HasPrefix(strings.TrimSpace(item), "-") {
		return "", errFormat
	}
	if idx >= len(args) {
		return "", errors.New("index (zero based) must be greater than or equal to zero and less than the size of the argument list")
	}
	var s string
	switch v := args[idx].(type) {
	case int64:
		s, err = formatInt(v, spec)
	case float64:
		s, err = formatFloat(v, spec)
	default:
		s = toString(v)
	}
	if err != nil {
		return "", err
	}
	if n := abs(align) - utf16Len(s); n > 0 {
		if align > 0 {
			s = strings.Repeat(" ", n) + s
		} else {
			s += strings.Repeat(" ", n)
		}
	}
	return s, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// precision splits a standard format specifier such as "N2" into its letter
// and precision (-1 when absent).
func precision(spec string) (byte, int, error) {
	letter := spec[0]
	if len(spec) == 1 {
		return letter, -1, nil
	}
	p, err := strconv.Atoi(spec[1:])
	if err != nil || p < 0 || p > 99 {
		return 0, 0, fmt.Errorf("the format specifier '%s' is not valid", spec)
	}
	return letter, p, nil
}

func formatInt(v int64, spec string) (string, error) {
	if spec == "" {
		return strconv.FormatInt(v, 10), nil
	}
	if strings.Trim(spec, "0") == "" { // custom pattern: at least len(spec) digits
		return padDigits(v, len(spec)), nil
	}
	letter, p, err := precision(spec)
	if err != nil {
		return "", err
	}
	switch letter {
	case 'D', 'd':
		return padDigits(v, max(p, 1)), nil
	case 'G', 'g':
		return strconv.FormatInt(v, 10), nil
	case 'X', 'x':
		s := strconv.FormatUint(uint64(v), 16)
		if letter == 'X' {
			s = strings.ToUpper(s)
		}
		if n := p - len(s); n > 0 {
			s = strings.Repeat("0", n) + s
		}
		return s, nil
	case 'N', 'n', 'F', 'f':
		return formatFloat(float64(v), spec)
	}
	return "", fmt.Errorf("the format specifier '%s' is not supported by this server", spec)
}

func padDigits(v int64, width int) string {
	u, neg := uint64(v), v < 0
	if neg {
		u = -u // two's complement: right for MinInt64 too
	}
	digits := strconv.FormatUint(u, 10)
	if n := width - len(digits); n > 0 {
		digits = strings.Repeat("0", n) + digits
	}
	if neg {
		return "-" + digits
	}
	return digits
}

func formatFloat(v float64, spec string) (string, error) {
	if spec == "" {
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	}
	letter, p, err := precision(spec)
	if err != nil {
		return "", err
	}
	if p < 0 {
		p = 2
	}
	switch letter {
	case 'F', 'f':
		return strconv.FormatFloat(v, 'f', p, 64), nil
	case 'N', 'n':
		s := strconv.FormatFloat(v, 'f', p, 64)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		whole, frac, _ := strings.Cut(s, ".")
		var b strings.Builder
		for i, d := range whole {
			if i > 0 && (len(whole)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(d)
		}
		if frac != "" {
			b.WriteString("." + frac)
		}
		if neg {
			return "-" + b.String(), nil
		}
		return b.String(), nil
	case 'G', 'g':
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	}
	return "", fmt.Errorf("the format specifier '%s' is not supported by this server", spec)
}
