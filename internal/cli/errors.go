package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"
)

// Exit codes, as az's: scripts test for 3 to tell "not there" from a
// failure.
const (
	exitOK          = 0
	exitError       = 1   // any failure not below
	exitUsage       = 2   // unknown command or flag, missing or invalid argument
	exitNotFound    = 3   // the resource (or its group) does not exist
	exitInterrupted = 130 // SIGINT or SIGTERM ended the command
)

// usageError is a mistake in the command line found by a command itself
// (cobra's own parsing errors are recognised by where they happen).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// notFoundError is a resource the CLI looked for by name and did not find,
// reported as az reports ARM's ResourceNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// armError is the body of an ARM error answer.
type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Target  string     `json:"target"`
	Details []armError `json:"details"`
}

// report prints err on w as az does and returns the exit code. preRun
// says that cobra refused the command line before the command ran.
func report(ctx context.Context, w io.Writer, cmd *cobra.Command, err error, preRun bool) int {
	var (
		ue   *usageError
		nf   *notFoundError
		re   *azcore.ResponseError
		auth *azidentity.AuthenticationFailedError
	)
	switch {
	case preRun || errors.As(err, &ue):
		fmt.Fprintln(w, "ERROR:", err)
		if cmd != nil {
			fmt.Fprintf(w, "Run '%s --help' for usage and examples.\n", cmd.CommandPath())
		}
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(w, "ERROR: interrupted")
		return exitInterrupted
	case errors.As(err, &nf):
		writeARMError(w, armError{Code: "ResourceNotFound", Message: nf.msg})
		return exitNotFound
	case errors.As(err, &re):
		e, ok := responseError(re)
		if !ok {
			fmt.Fprintf(w, "ERROR: Operation returned an invalid status '%s'\n", http.StatusText(re.StatusCode))
		} else {
			writeARMError(w, e)
		}
		if re.StatusCode == http.StatusNotFound {
			return exitNotFound
		}
		return exitError
	case errors.As(err, &auth):
		fmt.Fprintln(w, "ERROR: authentication failed:", authMessage(auth))
		return exitError
	}
	fmt.Fprintln(w, "ERROR:", err)
	return exitError
}

// responseError decodes the ARM error in a failed response's body.
func responseError(re *azcore.ResponseError) (armError, bool) {
	if re.RawResponse == nil {
		return armError{}, false
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil {
		return armError{}, false
	}
	var b struct {
		Error *armError `json:"error"`
	}
	if json.Unmarshal(body, &b) != nil || b.Error == nil || b.Error.Code == "" {
		return armError{}, false
	}
	return *b.Error, true
}

// writeARMError prints an ARM error as az prints azure-core's
// HttpResponseError:
//
//	ERROR: (Code) Message
//	Code: Code
//	Message: Message
//	Target: target
//	Exception Details:	(Inner) message
//		Code: Inner
//		Message: message
func writeARMError(w io.Writer, e armError) {
	fmt.Fprintf(w, "ERROR: (%s) %s\nCode: %s\nMessage: %s\n", e.Code, e.Message, e.Code, e.Message)
	if e.Target != "" {
		fmt.Fprintf(w, "Target: %s\n", e.Target)
	}
	for i, d := range e.Details {
		prefix := "\t"
		if i == 0 {
			prefix = "Exception Details:\t"
		}
		fmt.Fprintf(w, "%s(%s) %s\n\tCode: %s\n\tMessage: %s\n", prefix, d.Code, d.Message, d.Code, d.Message)
		if d.Target != "" {
			fmt.Fprintf(w, "\tTarget: %s\n", d.Target)
		}
	}
}

// authMessage is the token endpoint's error_description, which is what az
// prints, or the SDK's own (long) message when there is none.
func authMessage(e *azidentity.AuthenticationFailedError) string {
	if e.RawResponse != nil {
		if body, err := runtime.Payload(e.RawResponse); err == nil {
			var b struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(body, &b) == nil && b.Description != "" {
				return b.Description
			}
		}
	}
	return firstLine(e.Error())
}

// firstLine is the first line of an SDK error message; the rest is a
// dump of the HTTP exchange.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ":"))
}

// isNotFound reports whether err is an ARM 404.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
