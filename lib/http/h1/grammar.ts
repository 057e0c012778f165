/**
 * The pieces of HTTP's grammar (RFC 9110 5.6.2, 5.5) the edge's HTTP/1.1
 * client checks bytes against, in one place for heads, requests and
 * trailers.
 *
 * @module
 */

/** A token (`tchar`s): a method, or a field name. */
export const TOKEN: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A field value: visible characters, spaces and tabs, and obs-text; no CR, LF or NUL. */
export const FIELD_VALUE: RegExp = /^[\t\x20-\x7e\x80-\xff]*$/;
