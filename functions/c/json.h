/* A small JSON reader and writer for the C example and the C and C++ handlers `sluice new`
 * writes (which embeds this file and json.c): enough of RFC 8259 to read a CloudEvent
 * from stdin (objects, arrays, strings with escapes, numbers, literals) and to write string
 * values back out escaped. The whole input lives in memory; nodes point into one arena. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json {
    json_type type;
    double number;       /* JSON_NUMBER; JSON_BOOL as 0/1 */
    char *string;        /* JSON_STRING, decoded UTF-8, NUL-terminated */
    char *key;           /* the member name when this node sits in an object */
    struct json *child;  /* first element or member */
    struct json *next;   /* next sibling */
} json;

/* Parses `text` (NUL-terminated). Returns NULL and sets *error on malformed input. */
json *json_parse(const char *text, const char **error);
/* The member `key` of an object, or NULL. */
const json *json_get(const json *object, const char *key);
/* Writes `s` as a JSON string literal, quotes included. */
void json_write_string(FILE *out, const char *s);
void json_free(json *value);

#ifdef __cplusplus
}
#endif

#endif
