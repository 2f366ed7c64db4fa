"""Stable error codes of the core app and of the API layer.

A code is a promise to API clients: never rename one or change its value.
"""

from enum import StrEnum


class CoreErrorCode(StrEnum):
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    AUTH_REVOKED = "auth_revoked"
    SCOPE_MISSING = "scope_missing"
    PERMISSION_DENIED = "permission_denied"
    THROTTLED = "throttled"
    NOT_FOUND = "not_found"
    SERVER_ERROR = "server_error"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    MALFORMED_REQUEST = "malformed_request"
    VALIDATION_FAILED = "validation_failed"
    REQUEST_TOO_LARGE = "request_too_large"
    INVALID_SCOPE = "invalid_scope"
    INVALID_PARAMETER = "invalid_parameter"
    INVALID_INPUT = "invalid_input"  # a page form's field (core.form_input)


# metering's API views name these two through the module (`core_codes.REQUEST_TOO_LARGE`);
# they are the enum's members. Remove once metering uses CoreErrorCode.
REQUEST_TOO_LARGE = CoreErrorCode.REQUEST_TOO_LARGE
VALIDATION_FAILED = CoreErrorCode.VALIDATION_FAILED
