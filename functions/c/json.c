/* Recursive-descent JSON parser behind json.h. Depth is bounded so hostile input cannot
 * exhaust the guest's stack; every failure returns a message instead of aborting. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *p;
    const char *error;
    int depth;
} parser;

static void skip_ws(parser *ps) {
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static json *node(json_type type) {
    json *n = calloc(1, sizeof *n);
    if (n) n->type = type;
    return n;
}

static int fail(parser *ps, const char *message) {
    if (!ps->error) ps->error = message;
    return 0;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the string literal at ps->p (on its opening quote) into a fresh buffer. */
static char *parse_string(parser *ps) {
    const char *s = ++ps->p;
    size_t cap = 0;
    while (s[cap] && s[cap] != '"') cap += (s[cap] == '\\' && s[cap + 1]) ? 2 : 1;
    /* Decoded text is never longer than the escaped text. */
    char *out = malloc(cap + 1), *w = out;
    if (!out) { fail(ps, "out of memory"); return NULL; }
    for (;;) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') { ps->p++; break; }
        if (c == 0) { fail(ps, "unterminated string"); free(out); return NULL; }
        if (c < 0x20) { fail(ps, "control character in string"); free(out); return NULL; }
        if (c != '\\') { *w++ = (char)c; ps->p++; continue; }
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(ps->p, &cp)) { fail(ps, "bad \\u escape"); free(out); return NULL; }
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && ps->p[0] == '\\' && ps->p[1] == 'u' &&
                hex4(ps->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                ps->p += 6;
            }
            w += put_utf8(w, cp);
            break;
        }
        default: fail(ps, "bad escape"); free(out); return NULL;
        }
    }
    *w = 0;
    return out;
}

static json *parse_value(parser *ps);

static json *parse_container(parser *ps, json_type type, char close) {
    json *n = node(type), **tail;
    if (!n) { fail(ps, "out of memory"); return NULL; }
    tail = &n->child;
    ps->p++;
    skip_ws(ps);
    if (*ps->p == close) { ps->p++; return n; }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (type == JSON_OBJECT) {
            if (*ps->p != '"') { fail(ps, "expected a member name"); break; }
            if (!(key = parse_string(ps))) break;
            skip_ws(ps);
            if (*ps->p != ':') { free(key); fail(ps, "expected ':'"); break; }
            ps->p++;
        }
        json *v = parse_value(ps);
        if (!v) { free(key); break; }
        v->key = key;
        *tail = v;
        tail = &v->next;
        skip_ws(ps);
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; return n; }
        fail(ps, type == JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    json_free(n);
    return NULL;
}

static json *parse_value(parser *ps) {
    skip_ws(ps);
    if (++ps->depth > MAX_DEPTH) { fail(ps, "nested too deeply"); return NULL; }
    json *n = NULL;
    const char *p = ps->p;
    if (*p == '{') n = parse_container(ps, JSON_OBJECT, '}');
    else if (*p == '[') n = parse_container(ps, JSON_ARRAY, ']');
    else if (*p == '"') {
        char *s = parse_string(ps);
        if (s && !(n = node(JSON_STRING))) free(s);
        if (n) n->string = s;
    } else if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        if ((n = node(JSON_BOOL))) n->number = *p == 't';
        ps->p += *p == 't' ? 4 : 5;
    } else if (!strncmp(p, "null", 4)) {
        n = node(JSON_NULL);
        ps->p += 4;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        char *end;
        double d = strtod(p, &end);
        if (end == p) fail(ps, "bad number");
        else if ((n = node(JSON_NUMBER))) { n->number = d; ps->p = end; }
    } else {
        fail(ps, *p ? "unexpected character" : "unexpected end of input");
    }
    if (!n) fail(ps, "out of memory");
    ps->depth--;
    return n;
}

json *json_parse(const char *text, const char **error) {
    parser ps = {text, NULL, 0};
    json *v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (*ps.p) { json_free(v); v = NULL; fail(&ps, "trailing characters after the value"); }
    }
    if (!v && error) *error = ps.error;
    return v;
}

const json *json_get(const json *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (const json *m = object->child; m; m = m->next)
        if (!strcmp(m->key, key)) return m;
    return NULL;
}

void json_write_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { fputc('\\', out); fputc(c, out); }
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

void json_free(json *value) {
    while (value) {
        json *next = value->next;
        json_free(value->child);
        free(value->string);
        free(value->key);
        free(value);
        value = next;
    }
}
