// Text summary handler (Sluice command ABI): reads a `com.example.note.created` CloudEvent
// whose data is plain text and emits `com.example.note.summarized` with line, word and
// character counts, the most frequent words and an estimated reading time. Data that is not
// text can never be summarised: exit 65 (fatal). Built without exceptions (wasm32-wasi).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int kExDataErr = 65;
constexpr int kWordsPerMinute = 200;

// A JSON value: just what a CloudEvent envelope needs, parsed without exceptions.
struct Json {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    double number = 0;
    std::string string;
    std::vector<Json> items;
    std::vector<std::pair<std::string, Json>> members;

    const Json *get(const std::string &key) const {
        if (kind != Kind::Object) return nullptr;
        for (const auto &m : members)
            if (m.first == key) return &m.second;
        return nullptr;
    }
    const char *kind_name() const {
        static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
        return names[static_cast<int>(kind)];
    }
};

class Parser {
  public:
    explicit Parser(const std::string &text) : s_(text) {}

    std::optional<Json> parse_document() {
        auto v = value(0);
        ws();
        if (v && i_ != s_.size()) return fail("trailing characters after the value");
        return v;
    }
    const std::string &error() const { return error_; }

  private:
    const std::string &s_;
    size_t i_ = 0;
    std::string error_;

    std::nullopt_t fail(const char *message) {
        if (error_.empty()) error_ = message + (" at byte " + std::to_string(i_));
        return std::nullopt;
    }
    void ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) i_++;
    }
    bool literal(const char *word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }

    std::optional<Json> value(int depth) {
        if (depth > 64) return fail("nested too deeply");
        ws();
        if (i_ >= s_.size()) return fail("unexpected end of input");
        Json v;
        char c = s_[i_];
        if (c == '{' || c == '[') {
            bool object = c == '{';
            char close = object ? '}' : ']';
            v.kind = object ? Json::Kind::Object : Json::Kind::Array;
            i_++;
            ws();
            if (i_ < s_.size() && s_[i_] == close) { i_++; return v; }
            for (;;) {
                std::string key;
                if (object) {
                    ws();
                    auto k = string_literal();
                    if (!k) return std::nullopt;
                    key = std::move(*k);
                    ws();
                    if (i_ >= s_.size() || s_[i_] != ':') return fail("expected ':'");
                    i_++;
                }
                auto item = value(depth + 1);
                if (!item) return std::nullopt;
                if (object) v.members.emplace_back(std::move(key), std::move(*item));
                else v.items.push_back(std::move(*item));
                ws();
                if (i_ < s_.size() && s_[i_] == ',') { i_++; continue; }
                if (i_ < s_.size() && s_[i_] == close) { i_++; return v; }
                return fail("expected ',' or a closing bracket");
            }
        }
        if (c == '"') {
            auto str = string_literal();
            if (!str) return std::nullopt;
            v.kind = Json::Kind::String;
            v.string = std::move(*str);
            return v;
        }
        if (literal("true") || literal("false")) {
            v.kind = Json::Kind::Bool;
            v.number = c == 't';
            return v;
        }
        if (literal("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            const char *start = s_.c_str() + i_;
            char *end = nullptr;
            v.kind = Json::Kind::Number;
            v.number = std::strtod(start, &end);
            if (end == start) return fail("bad number");
            i_ += static_cast<size_t>(end - start);
            return v;
        }
        return fail("unexpected character");
    }

    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    std::optional<unsigned> hex4() {
        if (i_ + 4 > s_.size()) return std::nullopt;
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            int h = hex(s_[i_ + k]);
            if (h < 0) return std::nullopt;
            v = v << 4 | static_cast<unsigned>(h);
        }
        i_ += 4;
        return v;
    }
    static void put_utf8(std::string &out, unsigned cp) {
        if (cp < 0x80) { out += static_cast<char>(cp); return; }
        if (cp < 0x800) {
            out += static_cast<char>(0xC0 | cp >> 6);
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | cp >> 12);
            out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | cp >> 18);
            out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
            out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        }
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }

    std::optional<std::string> string_literal() {
        if (i_ >= s_.size() || s_[i_] != '"') return fail("expected a string");
        i_++;
        std::string out;
        while (i_ < s_.size()) {
            char c = s_[i_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (i_ >= s_.size()) break;
            char e = s_[i_++];
            switch (e) {
            case '"': case '\\': case '/': out += e; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                auto cp = hex4();
                if (!cp) return fail("bad \\u escape");
                if (*cp >= 0xD800 && *cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
                    i_ += 2;
                    auto lo = hex4();
                    if (!lo || *lo < 0xDC00 || *lo >= 0xE000) return fail("bad surrogate pair");
                    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*lo - 0xDC00);
                }
                put_utf8(out, *cp);
                break;
            }
            default: return fail("bad escape");
            }
        }
        return fail("unterminated string");
    }
};

std::string quote(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { out += '\\'; out += static_cast<char>(c); }
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else out += static_cast<char>(c);
    }
    return out + "\"";
}

struct Summary {
    size_t lines = 0, words = 0, characters = 0;
    std::vector<std::pair<std::string, size_t>> top_words;
};

bool is_word_byte(unsigned char c) {
    // Bytes of multi-byte UTF-8 sequences count as letters, so "café" is one word.
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c >= 0x80;
}

Summary summarize(const std::string &text, size_t top_n) {
    static const std::set<std::string> stop_words = {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it",
        "of", "on", "or", "that", "the", "this", "to", "was", "we", "will", "with"};
    Summary s;
    std::map<std::string, size_t> counts;
    std::string word;
    auto end_word = [&] {
        if (word.empty()) return;
        s.words++;
        if (!stop_words.count(word)) counts[word]++;
        word.clear();
    };
    for (unsigned char c : text) {
        if ((c & 0xC0) != 0x80) s.characters++;  // count code points, not bytes
        if (c == '\n') s.lines++;
        if (is_word_byte(c)) word += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        else end_word();
    }
    end_word();
    if (!text.empty() && text.back() != '\n') s.lines++;  // a last line without newline

    s.top_words.assign(counts.begin(), counts.end());
    // Most frequent first; ties alphabetically, so the output is deterministic.
    std::stable_sort(s.top_words.begin(), s.top_words.end(),
                     [](const auto &a, const auto &b) { return a.second > b.second; });
    if (s.top_words.size() > top_n) s.top_words.resize(top_n);
    return s;
}

int fatal(const std::string &message) {
    std::cerr << "error: " << message << '\n';
    return kExDataErr;
}

}  // namespace

int main() {
    std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    Parser parser(input);
    auto event = parser.parse_document();
    if (!event) return fatal("stdin is not JSON: " + parser.error());

    const Json *data = event->get("data");
    if (!data || data->kind != Json::Kind::String)
        return fatal(std::string("data: expected text, got ") + (data ? data->kind_name() : "nothing"));
    const Json *content_type = event->get("datacontenttype");
    if (content_type && content_type->string.rfind("text/", 0) != 0)
        return fatal("datacontenttype: expected text/*, got " + content_type->string);

    Summary s = summarize(data->string, 3);
    size_t reading_seconds = (s.words * 60 + kWordsPerMinute - 1) / kWordsPerMinute;

    std::string out = "{\"type\":\"com.example.note.summarized\"";
    if (const Json *subject = event->get("subject"); subject && subject->kind == Json::Kind::String)
        out += ",\"subject\":" + quote(subject->string);
    out += ",\"datacontenttype\":\"application/json\",\"data\":{";
    out += "\"lines\":" + std::to_string(s.lines);
    out += ",\"words\":" + std::to_string(s.words);
    out += ",\"characters\":" + std::to_string(s.characters);
    out += ",\"readingSeconds\":" + std::to_string(reading_seconds);
    out += ",\"topWords\":[";
    for (size_t k = 0; k < s.top_words.size(); k++) {
        if (k) out += ',';
        out += "{\"word\":" + quote(s.top_words[k].first) +
               ",\"count\":" + std::to_string(s.top_words[k].second) + "}";
    }
    out += "]}}";
    std::cout << out << '\n';
    std::cerr << "info: summarised " << s.words << " words in " << s.lines << " lines\n";
    return 0;
}
