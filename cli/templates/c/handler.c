/* {{name}}: a Sluice handler (command ABI, WASI preview 1). Reads a `com.example.hello`
 * CloudEvent as JSON on stdin and writes the reply, `com.example.greeting`, as one JSON line on
 * stdout. An event without `data.name` can never succeed: exit 65, fatal, and the last
 * `error:` line on stderr says why; the event goes to the dead-letter bus without retries. */
#include <stdio.h>

#include "json.h"

#define EX_DATAERR 65
#define MAX_EVENT (1 << 20)

static int fatal(const char *what, const char *detail) {
    fprintf(stderr, "error: %s%s\n", what, detail ? detail : "");
    return EX_DATAERR;
}

int main(void) {
    static char input[MAX_EVENT + 1];
    size_t n = fread(input, 1, MAX_EVENT + 1, stdin);
    if (n > MAX_EVENT) return fatal("event larger than 1 MiB", NULL);
    input[n] = 0;

    const char *error = NULL;
    json *event = json_parse(input, &error);
    if (!event) return fatal("stdin is not JSON: ", error);

    const json *name = json_get(json_get(event, "data"), "name");
    if (!name || name->type != JSON_STRING || !name->string[0])
        return fatal("data.name: must be a non-empty string", NULL);
    fprintf(stderr, "info: greeting %s\n", name->string);

    fputs("{\"type\":\"com.example.greeting\"", stdout);
    const json *subject = json_get(event, "subject");
    if (subject && subject->type == JSON_STRING) {
        fputs(",\"subject\":", stdout);
        json_write_string(stdout, subject->string);
    }
    static char greeting[MAX_EVENT + 16];
    snprintf(greeting, sizeof greeting, "Hello, %s!", name->string);
    fputs(",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":", stdout);
    json_write_string(stdout, greeting);
    fputs("}}\n", stdout);
    json_free(event);
    return 0;
}
