/* Sensor reading handler (Sluice command ABI): reads a `com.example.sensor.reading`
 * CloudEvent from stdin, converts the reading to degrees Celsius and emits
 * `com.example.sensor.normalized`; above ALERT_ABOVE_C (default 35) it also emits
 * `com.example.sensor.alert`. A reading that can never be converted exits 65 (fatal). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define EX_DATAERR 65
#define MAX_EVENT (1 << 20)

static int fatal(const char *what, const char *detail) {
    fprintf(stderr, "error: %s%s\n", what, detail ? detail : "");
    return EX_DATAERR;
}

static double round2(double x) { return round(x * 100.0) / 100.0; }

/* Converts `value` in `unit` to Celsius; returns 0 when the unit is unknown. */
static int to_celsius(double value, const char *unit, double *celsius) {
    if (!strcmp(unit, "C")) *celsius = value;
    else if (!strcmp(unit, "F")) *celsius = (value - 32.0) * 5.0 / 9.0;
    else if (!strcmp(unit, "K")) *celsius = value - 273.15;
    else return 0;
    return 1;
}

/* Starts a reply event line; the caller writes `data` and closes it with `}}`. */
static void begin_reply(const char *type, const json *subject) {
    printf("{\"type\":\"%s\"", type);
    if (subject && subject->type == JSON_STRING) {
        fputs(",\"subject\":", stdout);
        json_write_string(stdout, subject->string);
    }
    fputs(",\"datacontenttype\":\"application/json\",\"data\":{\"sensor\":", stdout);
}

int main(void) {
    static char input[MAX_EVENT + 1];
    size_t n = fread(input, 1, MAX_EVENT + 1, stdin);
    if (n > MAX_EVENT) return fatal("event larger than 1 MiB", NULL);
    input[n] = 0;

    const char *error = NULL;
    json *event = json_parse(input, &error);
    if (!event) return fatal("stdin is not JSON: ", error);

    const json *data = json_get(event, "data");
    const json *sensor = json_get(data, "sensor");
    const json *value = json_get(data, "value");
    const json *unit = json_get(data, "unit");
    if (!sensor || sensor->type != JSON_STRING) return fatal("data.sensor: must be a string", NULL);
    if (!value || value->type != JSON_NUMBER) return fatal("data.value: must be a number", NULL);
    if (!unit || unit->type != JSON_STRING) return fatal("data.unit: must be a string", NULL);

    double celsius;
    if (!to_celsius(value->number, unit->string, &celsius))
        return fatal("data.unit: must be C, F or K, not ", unit->string);
    if (celsius < -273.15)
        return fatal("data.value: below absolute zero", NULL);
    celsius = round2(celsius);

    double threshold = 35.0;
    const char *env = getenv("ALERT_ABOVE_C");
    if (env) {
        char *end;
        threshold = strtod(env, &end);
        if (end == env || *end) {
            /* A bad setting is the deployment's fault, not the event's: retry after a fix. */
            fprintf(stderr, "error: ALERT_ABOVE_C=%s is not a number\n", env);
            return 1;
        }
    }

    const json *subject = json_get(event, "subject");
    begin_reply("com.example.sensor.normalized", subject);
    json_write_string(stdout, sensor->string);
    printf(",\"celsius\":%.2f}}\n", celsius);

    if (celsius > threshold) {
        begin_reply("com.example.sensor.alert", subject);
        json_write_string(stdout, sensor->string);
        printf(",\"celsius\":%.2f,\"threshold\":%.2f,\"excess\":%.2f}}\n", celsius, threshold,
               round2(celsius - threshold));
        fprintf(stderr, "warn: %s at %.2f C, above %.2f C\n", sensor->string, celsius, threshold);
    } else {
        fprintf(stderr, "info: %s at %.2f C\n", sensor->string, celsius);
    }
    json_free(event);
    return 0;
}
