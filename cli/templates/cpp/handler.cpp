// {{name}}: a Sluice handler (command ABI, WASI preview 1, C++17). Reads a `com.example.hello`
// CloudEvent as JSON on stdin and writes the reply, `com.example.greeting`, as one JSON line on
// stdout. An event without `data.name` can never succeed: exit 65, fatal, and the last
// `error:` line on stderr says why; the event goes to the dead-letter bus without retries.
// json.h / json.c: a small JSON reader (C, shared with `sluice new c`).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>

#include "json.h"

namespace {

constexpr int EX_DATAERR = 65;

int fatal(const std::string &message) {
    std::cerr << "error: " << message << '\n';
    return EX_DATAERR;
}

// The decision, apart from input and output: the greeting for a name, if there is one.
std::optional<std::string> greeting(const json *data) {
    const json *name = json_get(data, "name");
    if (!name || name->type != JSON_STRING || !name->string[0]) return std::nullopt;
    return "Hello, " + std::string(name->string) + "!";
}

}  // namespace

int main() {
    std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    const char *error = nullptr;
    json *event = json_parse(input.c_str(), &error);
    if (!event) return fatal(std::string("stdin is not JSON: ") + error);

    auto text = greeting(json_get(event, "data"));
    if (!text) return fatal("data.name: must be a non-empty string");
    std::cerr << "info: " << *text << '\n';

    std::fputs("{\"type\":\"com.example.greeting\"", stdout);
    const json *subject = json_get(event, "subject");
    if (subject && subject->type == JSON_STRING) {
        std::fputs(",\"subject\":", stdout);
        json_write_string(stdout, subject->string);
    }
    std::fputs(",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":", stdout);
    json_write_string(stdout, text->c_str());
    std::fputs("}}\n", stdout);
    json_free(event);
    return 0;
}
