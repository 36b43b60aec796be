;; Byte measure handler, hand-written WebAssembly text (Sluice command ABI).
;; Streams stdin (the CloudEvent as JSON) through a 64 KiB buffer, counting its bytes and
;; folding them into an FNV-1a 32-bit checksum, then writes one reply event line:
;;   {"type":"com.example.bytes.measured","datacontenttype":"application/json",
;;    "data":{"bytes":N,"fnv1a32":N}}
;; It reads the envelope as opaque bytes, so any input is measurable; a failed read of stdin
;; exits 1 (retryable). Imports only fd_read, fd_write and proc_exit.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nread i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param $code i32)))

  ;; Memory map: 0 iovec {ptr, len}; 8 byte count returned by fd_read/fd_write;
  ;; 64 the fixed text; 1024 the output line; 65536 the input chunk (64 KiB).
  (memory (export "memory") 2)
  (global $iov i32 (i32.const 0))
  (global $count i32 (i32.const 8))
  (global $out i32 (i32.const 1024))
  (global $chunk i32 (i32.const 65536))
  (global $chunk_size i32 (i32.const 65536))

  (data (i32.const 64) "{\"type\":\"com.example.bytes.measured\",\"datacontenttype\":\"application/json\",\"data\":{\"bytes\":")
  (data (i32.const 256) ",\"fnv1a32\":")
  (data (i32.const 320) "}}\n")
  (data (i32.const 384) "error: reading stdin failed\n")

  ;; Copies $len bytes from $src to $dst and returns the end of the copy.
  ;; (A byte loop rather than memory.copy keeps the module within the MVP feature set.)
  (func $append (param $dst i32) (param $src i32) (param $len i32) (result i32)
    (block $done
      (loop $copy
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $copy)))
    (local.get $dst))

  ;; Writes $n (unsigned, up to 2^64-1) in decimal at $dst; returns the end of the digits.
  (func $append_u64 (param $dst i32) (param $n i64) (result i32)
    (local $digits i32) (local $i i32) (local $m i64)
    ;; Count the digits first so they can be written right to left.
    (local.set $digits (i32.const 1))
    (local.set $m (local.get $n))
    (block $done
      (loop $count_digits
        (br_if $done (i64.lt_u (local.get $m) (i64.const 10)))
        (local.set $m (i64.div_u (local.get $m) (i64.const 10)))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (br $count_digits)))
    (local.set $i (local.get $digits))
    (loop $write_digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8
        (i32.add (local.get $dst) (local.get $i))
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $write_digit (i32.gt_u (local.get $i) (i32.const 0))))
    (i32.add (local.get $dst) (local.get $digits)))

  ;; Writes [$ptr, $ptr+$len) to $fd, looping over short writes; false on an error.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (local $written i32)
    (block $failed
      (loop $more
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (i32.store (global.get $iov) (local.get $ptr))
        (i32.store offset=4 (global.get $iov) (local.get $len))
        (br_if $failed
          (call $fd_write (local.get $fd) (global.get $iov) (i32.const 1) (global.get $count)))
        (local.set $written (i32.load (global.get $count)))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $written)))
        (local.set $len (i32.sub (local.get $len) (local.get $written)))
        (br $more)))
    (i32.const 0))

  (func $main (export "_start")
    (local $total i64) (local $hash i32) (local $n i32) (local $p i32) (local $end i32)
    (local.set $hash (i32.const 0x811c9dc5))            ;; FNV-1a offset basis
    (block $eof
      (loop $read
        (i32.store (global.get $iov) (global.get $chunk))
        (i32.store offset=4 (global.get $iov) (global.get $chunk_size))
        (if (call $fd_read (i32.const 0) (global.get $iov) (i32.const 1) (global.get $count))
          (then
            (drop (call $write_all (i32.const 2) (i32.const 384) (i32.const 28)))
            (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (global.get $count)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (local.get $n))))
        (local.set $p (global.get $chunk))
        (local.set $end (i32.add (global.get $chunk) (local.get $n)))
        (loop $byte
          (local.set $hash
            (i32.mul
              (i32.xor (local.get $hash) (i32.load8_u (local.get $p)))
              (i32.const 0x01000193)))                 ;; FNV prime
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $byte (i32.lt_u (local.get $p) (local.get $end))))
        (br $read)))

    (local.set $p (call $append (global.get $out) (i32.const 64) (i32.const 90)))
    (local.set $p (call $append_u64 (local.get $p) (local.get $total)))
    (local.set $p (call $append (local.get $p) (i32.const 256) (i32.const 11)))
    (local.set $p (call $append_u64 (local.get $p) (i64.extend_i32_u (local.get $hash))))
    (local.set $p (call $append (local.get $p) (i32.const 320) (i32.const 3)))
    (if (i32.eqz (call $write_all (i32.const 1) (global.get $out)
                   (i32.sub (local.get $p) (global.get $out))))
      (then (call $proc_exit (i32.const 1)))))
)
