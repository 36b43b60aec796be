//! {{name}}: a Sluice handler (command ABI, WASI preview 1, Zig). Reads a `com.example.hello`
//! CloudEvent as JSON on stdin and writes the reply, `com.example.greeting`, as one JSON line
//! on stdout. An event without `data.name` can never succeed: exit 65, fatal, and the last
//! `error:` line on stderr says why; the event goes to the dead-letter bus without retries.
const std = @import("std");

const ex_dataerr: u8 = 65;
const max_event_bytes = 1 << 20;

/// The decision, apart from input and output: the name to greet, or null.
fn nameOf(data: std.json.Value) ?[]const u8 {
    const object = switch (data) {
        .object => |o| o,
        else => return null,
    };
    return switch (object.get("name") orelse .null) {
        .string => |s| if (s.len > 0) s else null,
        else => null,
    };
}

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();
    const stderr = std.io.getStdErr().writer();

    const input = std.io.getStdIn().readToEndAlloc(allocator, max_event_bytes) catch |err| {
        stderr.print("error: reading stdin: {s}\n", .{@errorName(err)}) catch {};
        return if (err == error.StreamTooLong) ex_dataerr else 1;
    };
    const event = std.json.parseFromSliceLeaky(std.json.Value, allocator, input, .{}) catch |err| {
        stderr.print("error: stdin is not a JSON CloudEvent: {s}\n", .{@errorName(err)}) catch {};
        return ex_dataerr;
    };
    const envelope = switch (event) {
        .object => |o| o,
        else => {
            stderr.writeAll("error: stdin is not a JSON object\n") catch {};
            return ex_dataerr;
        },
    };
    const name = nameOf(envelope.get("data") orelse .null) orelse {
        stderr.writeAll("error: data.name: must be a non-empty string\n") catch {};
        return ex_dataerr;
    };
    const greeting = std.fmt.allocPrint(allocator, "Hello, {s}!", .{name}) catch return 1;
    stderr.print("info: {s}\n", .{greeting}) catch {};

    var buffered = std.io.bufferedWriter(std.io.getStdOut().writer());
    const out = buffered.writer();
    out.writeAll("{\"type\":\"com.example.greeting\"") catch return 1;
    switch (envelope.get("subject") orelse .null) {
        .string => |s| {
            out.writeAll(",\"subject\":") catch return 1;
            std.json.encodeJsonString(s, .{}, out) catch return 1;
        },
        else => {},
    }
    out.writeAll(",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":") catch return 1;
    std.json.encodeJsonString(greeting, .{}, out) catch return 1;
    out.writeAll("}}\n") catch return 1;
    buffered.flush() catch return 1;
    return 0;
}

test "greets the name in data" {
    const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator,
        \\{"name":"Ada"}
    , .{});
    defer parsed.deinit();
    try std.testing.expectEqualStrings("Ada", nameOf(parsed.value).?);
}

test "no name, an empty name or a number is refused" {
    for ([_][]const u8{ "{}", "{\"name\":\"\"}", "{\"name\":3}", "[]" }) |text| {
        const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator, text, .{});
        defer parsed.deinit();
        try std.testing.expect(nameOf(parsed.value) == null);
    }
}
