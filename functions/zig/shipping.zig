//! Shipping quote handler (Sluice command ABI): reads a `com.example.parcel.packed`
//! CloudEvent from stdin and emits `com.example.shipping.quoted` with the cost of shipping
//! the parcel by weight and zone. A parcel no carrier takes (unknown zone, too heavy) exits
//! 65, so Sluice dead-letters it at once instead of retrying.
const std = @import("std");

const ex_dataerr = 65;
const max_event_bytes = 1 << 20;
const max_kg = 30.0;
const express_factor = 1.5;

const Zone = struct { name: []const u8, base: f64, per_kg: f64 };

/// Tariffs in EUR: a base fee plus a price per started half kilogram's worth of weight.
const zones = [_]Zone{
    .{ .name = "DOMESTIC", .base = 4.95, .per_kg = 0.80 },
    .{ .name = "EU", .base = 9.50, .per_kg = 1.60 },
    .{ .name = "WORLD", .base = 19.00, .per_kg = 4.20 },
};

const Quote = struct {
    parcel_id: []const u8,
    zone: []const u8,
    billable_kg: f64,
    express: bool,
    cost: f64,
};

/// Why an event can never be quoted; the message names the field.
const Rejection = struct { message: []const u8 };

fn field(object: std.json.ObjectMap, name: []const u8) ?std.json.Value {
    return object.get(name);
}

fn number(v: std.json.Value) ?f64 {
    return switch (v) {
        .integer => |i| @floatFromInt(i),
        .float => |f| f,
        else => null,
    };
}

/// The pure pricing decision: parcel data in, a quote or the reason it cannot be shipped.
fn quote(data: std.json.Value, rejection: *Rejection) ?Quote {
    const object = switch (data) {
        .object => |o| o,
        else => {
            rejection.message = "data: must be an object";
            return null;
        },
    };
    const parcel_id = switch (field(object, "parcelId") orelse .null) {
        .string => |s| s,
        else => {
            rejection.message = "data.parcelId: must be a string";
            return null;
        },
    };
    const weight = number(field(object, "weightKg") orelse .null) orelse {
        rejection.message = "data.weightKg: must be a number";
        return null;
    };
    if (!(weight > 0)) {
        rejection.message = "data.weightKg: must be above 0";
        return null;
    }
    if (weight > max_kg) {
        rejection.message = "data.weightKg: parcels above 30 kg ship as freight";
        return null;
    }
    const zone_name = switch (field(object, "zone") orelse .null) {
        .string => |s| s,
        else => {
            rejection.message = "data.zone: must be a string";
            return null;
        },
    };
    const zone = for (zones) |z| {
        if (std.mem.eql(u8, z.name, zone_name)) break z;
    } else {
        rejection.message = "data.zone: must be DOMESTIC, EU or WORLD";
        return null;
    };
    const express = switch (field(object, "express") orelse .null) {
        .bool => |b| b,
        .null => false,
        else => {
            rejection.message = "data.express: must be a boolean";
            return null;
        },
    };

    // Carriers bill in started half kilograms.
    const billable_kg = @ceil(weight * 2.0) / 2.0;
    var cost = zone.base + zone.per_kg * billable_kg;
    if (express) cost *= express_factor;
    return .{
        .parcel_id = parcel_id,
        .zone = zone.name,
        .billable_kg = billable_kg,
        .express = express,
        .cost = @round(cost * 100.0) / 100.0,
    };
}

fn writeReply(out: anytype, subject: ?[]const u8, q: Quote) !void {
    try out.writeAll("{\"type\":\"com.example.shipping.quoted\"");
    if (subject) |s| {
        try out.writeAll(",\"subject\":");
        try std.json.encodeJsonString(s, .{}, out);
    }
    try out.writeAll(",\"datacontenttype\":\"application/json\",\"data\":{\"parcelId\":");
    try std.json.encodeJsonString(q.parcel_id, .{}, out);
    try out.print(",\"zone\":\"{s}\",\"billableKg\":{d:.1},\"service\":\"{s}\",\"cost\":{d:.2},\"currency\":\"EUR\"}}}}\n", .{
        q.zone,
        q.billable_kg,
        if (q.express) "express" else "standard",
        q.cost,
    });
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

    var rejection: Rejection = .{ .message = "" };
    const q = quote(envelope.get("data") orelse .null, &rejection) orelse {
        stderr.print("error: {s}\n", .{rejection.message}) catch {};
        return ex_dataerr;
    };
    const subject: ?[]const u8 = switch (envelope.get("subject") orelse .null) {
        .string => |s| s,
        else => null,
    };

    var buffered = std.io.bufferedWriter(std.io.getStdOut().writer());
    writeReply(buffered.writer(), subject, q) catch return 1;
    buffered.flush() catch return 1;
    stderr.print("info: {s} to {s}: {d:.2} EUR\n", .{ q.parcel_id, q.zone, q.cost }) catch {};
    return 0;
}

test "an EU express parcel is billed per started half kilogram" {
    var rejection: Rejection = .{ .message = "" };
    const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator,
        \\{"parcelId":"P-1","weightKg":3.2,"zone":"EU","express":true}
    , .{});
    defer parsed.deinit();
    const q = quote(parsed.value, &rejection).?;
    try std.testing.expectEqual(@as(f64, 3.5), q.billable_kg);
    try std.testing.expectEqual(@as(f64, 22.65), q.cost);
}

test "an unknown zone is rejected with the field named" {
    var rejection: Rejection = .{ .message = "" };
    const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator,
        \\{"parcelId":"P-1","weightKg":1,"zone":"MARS"}
    , .{});
    defer parsed.deinit();
    try std.testing.expect(quote(parsed.value, &rejection) == null);
    try std.testing.expectEqualStrings("data.zone: must be DOMESTIC, EU or WORLD", rejection.message);
}
