// Package errdefs holds the typed error classes every Infinivirt library
// returns: NotFound, AlreadyExists, InvalidArgument (naming the field at
// fault), FailedPrecondition, ResourceExhausted, Unavailable,
// DeadlineExceeded, PermissionDenied, MethodNotAllowed and Internal. It is a leaf: libraries
// use it without importing the REST types, and the API maps the classes to
// status codes.
//
// A library's Field names the field in its own terms (a spec field such as
// "devices[1].path"); the agent renames it to the request field the client
// sent before answering.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package errdefs

import (
	"context"
	"errors"
	"fmt"
)

// Code is the class of an error. Every error that crosses the API has one.
type Code string

// The classes, as the API spells them.
const (
	CodeInvalidArgument    Code = "InvalidArgument"
	CodeNotFound           Code = "NotFound"
	CodeAlreadyExists      Code = "AlreadyExists"
	CodeFailedPrecondition Code = "FailedPrecondition"
	CodeResourceExhausted  Code = "ResourceExhausted" // the host lacks the memory or CPUs asked for
	CodeUnavailable        Code = "Unavailable"
	CodeDeadlineExceeded   Code = "DeadlineExceeded"
	CodePermissionDenied   Code = "PermissionDenied"
	CodeMethodNotAllowed   Code = "MethodNotAllowed" // the path exists, not with this method
	CodeInternal           Code = "Internal"
)

// Codes lists every class, for documents and exhaustive tests.
var Codes = []Code{
	CodeInvalidArgument, CodeNotFound, CodeAlreadyExists, CodeFailedPrecondition, CodeResourceExhausted,
	CodeUnavailable, CodeDeadlineExceeded, CodePermissionDenied, CodeMethodNotAllowed, CodeInternal,
}

// Error is a typed error. Field names the field at fault.
type Error struct {
	Code    Code   `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is lets errors.Is match on the class alone: errors.Is(err, &Error{Code: CodeNotFound}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Field == "" || t.Field == e.Field)
}

// HTTPStatus maps the class to the status code the API answers with. The
// numbers are spelled out so that this package does not link net/http.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalidArgument:
		return 400
	case CodeNotFound:
		return 404
	case CodeAlreadyExists, CodeFailedPrecondition:
		return 409
	case CodeResourceExhausted:
		return 429
	case CodeUnavailable:
		return 503
	case CodeDeadlineExceeded:
		return 504
	case CodePermissionDenied:
		return 403
	case CodeMethodNotAllowed:
		return 405
	default:
		return 500
	}
}

// MethodNotAllowed reports a request whose path exists with other methods only.
func MethodNotAllowed(format string, args ...any) *Error {
	return &Error{Code: CodeMethodNotAllowed, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports a bad value in the named field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgument, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound reports a missing object.
func NotFound(format string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

// AlreadyExists reports a clash with an existing object; field names the clashing field.
func AlreadyExists(field, format string, args ...any) *Error {
	return &Error{Code: CodeAlreadyExists, Field: field, Message: fmt.Sprintf(format, args...)}
}

// FailedPrecondition reports a request that the object's state does not allow, such as "VM must be off".
func FailedPrecondition(format string, args ...any) *Error {
	return &Error{Code: CodeFailedPrecondition, Message: fmt.Sprintf(format, args...)}
}

// Exhausted reports a request the host lacks the resources for, saying
// what is short; field names the field asking for them, or is empty.
func Exhausted(field, format string, args ...any) *Error {
	return &Error{Code: CodeResourceExhausted, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unavailable reports a dependency that cannot be reached right now.
func Unavailable(format string, args ...any) *Error {
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf(format, args...)}
}

// DeadlineExceeded reports an operation that ran out of time.
func DeadlineExceeded(format string, args ...any) *Error {
	return &Error{Code: CodeDeadlineExceeded, Message: fmt.Sprintf(format, args...)}
}

// PermissionDenied reports a caller that may not do what it asked.
func PermissionDenied(format string, args ...any) *Error {
	return &Error{Code: CodePermissionDenied, Message: fmt.Sprintf(format, args...)}
}

// Internal reports a failure that is nobody's input's fault.
func Internal(format string, args ...any) *Error {
	return &Error{Code: CodeInternal, Message: fmt.Sprintf(format, args...)}
}

// As converts any error to a typed one, keeping the class when there is one.
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeDeadlineExceeded, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeUnavailable, Message: err.Error()}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// RenameField returns err with its field renamed by rename when it is a
// typed error with a field, so that a library's own field name (a spec
// field) reaches the client as the request field it sent. Other errors, and
// fields rename does not know (it returns ""), pass through unchanged.
func RenameField(err error, rename func(field string) string) error {
	var e *Error
	if !errors.As(err, &e) || e.Field == "" {
		return err
	}
	to := rename(e.Field)
	if to == "" || to == e.Field {
		return err
	}
	c := *e
	c.Field = to
	return &c
}
