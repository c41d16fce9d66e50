package service

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on the free-form fields a caller stores, as ARM sets them. Every
// record is read whole by a GET, a list and a restart, so a field without
// a bound would let one request make all of those slow for everyone.
const (
	maxTags           = 50
	maxTagNameChars   = 512
	maxTagValueChars  = 256
	tagNameReserved   = `<>%&\?/`
	maxDeploymentName = 64
)

// checkTags refuses a tag set ARM would refuse: more than 50 tags, an
// empty or over-long name, a name with a reserved or control character,
// an over-long value.
func checkTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return invalid("tags", "A resource has at most %d tags; the request has %d.", maxTags, len(tags))
	}
	for name, value := range tags {
		switch n := utf8.RuneCountInString(name); {
		case n == 0:
			return invalid("tags", "A tag name must not be empty.")
		case n > maxTagNameChars:
			return invalid("tags", "The tag name '%s…' is %d characters long; at most %d are allowed.", truncate(name, 40), n, maxTagNameChars)
		}
		for _, r := range name {
			if strings.ContainsRune(tagNameReserved, r) || unicode.IsControl(r) {
				return invalid("tags", "The tag name '%s' has the reserved character %q: tag names may not contain any of %s or control characters.",
					truncate(name, 40), r, tagNameReserved)
			}
		}
		if n := utf8.RuneCountInString(value); n > maxTagValueChars {
			return invalid("tags", "The value of tag '%s' is %d characters long; at most %d are allowed.", truncate(name, 40), n, maxTagValueChars)
		}
	}
	return nil
}

// truncate shortens s to at most n runes for an error message, which must
// not echo an attacker's megabytes back.
func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// osTypes and hyperVGenerations are the values Azure accepts for a disk's
// osType and hyperVGeneration; the stored spelling is the list's.
var (
	osTypes           = []string{"Windows", "Linux"}
	hyperVGenerations = []string{"V1", "V2"}
)

// CheckSpec checks a PUT's free-form fields (tags, osType,
// hyperVGeneration) and returns the spec with its enumerations spelled
// canonically. Put calls it; so does template validation, to refuse a
// deployment before it creates anything.
func CheckSpec(spec Spec) (Spec, error) {
	if err := checkTags(spec.Tags); err != nil {
		return spec, err
	}
	if spec.OSType != "" {
		c, ok := canonical(osTypes, spec.OSType)
		if !ok {
			return spec, invalid("properties.osType", "osType '%s' is not valid; use %s.", truncate(spec.OSType, 40), strings.Join(osTypes, " or "))
		}
		spec.OSType = c
	}
	if spec.HyperVGeneration != "" {
		c, ok := canonical(hyperVGenerations, spec.HyperVGeneration)
		if !ok {
			return spec, invalid("properties.hyperVGeneration", "hyperVGeneration '%s' is not valid; use %s.", truncate(spec.HyperVGeneration, 40), strings.Join(hyperVGenerations, " or "))
		}
		spec.HyperVGeneration = c
	}
	return spec, nil
}

// ValidDeploymentName reports whether s is a valid deployment name, as
// ARM allows: 1-64 letters, digits, '_', '-', '.', '(' or ')'.
func ValidDeploymentName(s string) bool { return armName(s, maxDeploymentName) }

func invalidDeploymentName(name string) error {
	return invalid("deploymentName", "The deployment name '%s' is invalid: use 1-%d letters, digits, '_', '-', '.', '(' or ')'.", truncate(name, 80), maxDeploymentName)
}
