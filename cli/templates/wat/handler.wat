;; {{name}}: a Sluice handler in hand-written WebAssembly text (command ABI, WASI preview 1).
;; Reads a `com.example.hello` CloudEvent as JSON on stdin and writes the reply,
;;   {"type":"com.example.greeting","subject":…,"datacontenttype":"application/json",
;;    "data":{"greeting":"Hello, NAME!"}}
;; An event without `data.name` can never succeed: exit 65, fatal, with an `error:` line on
;; stderr saying why; the event goes to the dead-letter bus without retries.
;;
;; It reads JSON only as far as it needs: it walks the members of the envelope and of `data`,
;; skipping the values it does not want (strings, numbers, nested objects and arrays), and
;; copies the strings it does want still escaped, so the reply stays valid JSON without
;; decoding them. Imports only fd_read, fd_write and proc_exit.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory map: 0 iovec {ptr, len}; 8 count from fd_read/fd_write; 64.. fixed text;
  ;; 4096 the event (up to 1 MiB); 1 MiB + 8192 the reply line.
  (memory (export "memory") 34)
  (global $iov i32 (i32.const 0))
  (global $count i32 (i32.const 8))
  (global $in i32 (i32.const 4096))
  (global $max_in i32 (i32.const 1048576))
  (global $out i32 (i32.const 1056768))

  (data (i32.const 64) "data")                ;; 4 bytes
  (data (i32.const 80) "name")                ;; 4
  (data (i32.const 96) "subject")             ;; 7
  (data (i32.const 128) "{\"type\":\"com.example.greeting\"") ;; 30
  (data (i32.const 192) ",\"subject\":")       ;; 11
  (data (i32.const 224) ",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":\"Hello, ") ;; 65
  (data (i32.const 320) "!\"}}\n")            ;; 5
  (data (i32.const 352) "error: data.name: must be a non-empty string\n") ;; 45
  (data (i32.const 416) "error: event larger than 1 MiB\n") ;; 31
  (data (i32.const 448) "error: reading stdin failed\n") ;; 28
  (data (i32.const 480) "info: greeted\n")    ;; 14

  ;; Copies $len bytes from $src to $dst and returns the end of the copy (a byte loop rather
  ;; than memory.copy keeps the module within the MVP feature set).
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

  ;; Writes $len bytes at $ptr to $fd, all of them; returns 0, or 1 when a write fails.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (global.get $iov) (local.get $ptr))
        (i32.store offset=4 (global.get $iov) (local.get $len))
        (if (call $fd_write (local.get $fd) (global.get $iov) (i32.const 1) (global.get $count))
          (then (return (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (global.get $count))))
        (local.set $len (i32.sub (local.get $len) (i32.load (global.get $count))))
        (br $more)))
    (i32.const 0))

  ;; Writes a message to stderr and exits with $code.
  (func $fail (param $msg i32) (param $len i32) (param $code i32)
    (drop (call $write (i32.const 2) (local.get $msg) (local.get $len)))
    (call $proc_exit (local.get $code))
    unreachable)

  (func $is_space (param $c i32) (result i32)
    (i32.or
      (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
      (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  (func $skip_space (param $p i32) (param $end i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (br_if $done (i32.eqz (call $is_space (i32.load8_u (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  ;; Whether the $len bytes at $a equal those at $b.
  (func $equal (param $a i32) (param $b i32) (param $len i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; $p at the opening quote of a JSON string: the position of its closing quote, or -1.
  (func $string_end (param $p i32) (param $end i32) (result i32)
    (local $c i32)
    (if (i32.or (i32.ge_u (local.get $p) (local.get $end))
                (i32.ne (i32.load8_u (local.get $p)) (i32.const 34)))
      (then (return (i32.const -1))))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (loop $next
      (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.eq (local.get $c) (i32.const 34)) (then (return (local.get $p))))
      ;; A backslash escapes the next byte (\" does not end the string).
      (local.set $p (i32.add (local.get $p)
        (select (i32.const 2) (i32.const 1) (i32.eq (local.get $c) (i32.const 92)))))
      (br $next))
    (i32.const -1))

;; The position just past the JSON value at $p (after skipping nothing before it), or -1.
  ;; Objects and arrays are skipped by depth, strings inside them by their quotes.
  (func $skip_value (param $p i32) (param $end i32) (result i32)
    (local $c i32) (local $depth i32)
    (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
    (local.set $c (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 34))
      (then
        (local.set $p (call $string_end (local.get $p) (local.get $end)))
        (return (select (i32.const -1) (i32.add (local.get $p) (i32.const 1))
          (i32.lt_s (local.get $p) (i32.const 0))))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
      (then
        (loop $next
          (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 34))
            (then
              (local.set $p (call $string_end (local.get $p) (local.get $end)))
              (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 125)) (i32.eq (local.get $c) (i32.const 93)))
            (then
              (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
              (if (i32.eqz (local.get $depth))
                (then (return (i32.add (local.get $p) (i32.const 1)))))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next))))
    ;; A number or a literal: up to the next delimiter.
    (loop $scalar
      (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (local.get $p))))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.or (i32.or (i32.eq (local.get $c) (i32.const 44)) (i32.eq (local.get $c) (i32.const 125)))
                  (i32.or (i32.eq (local.get $c) (i32.const 93)) (call $is_space (local.get $c))))
        (then (return (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $scalar))
    (i32.const -1))

  ;; $obj at the `{` of an object: the position of the value of its member named by the $len
  ;; bytes at $key (an unescaped name), or -1 when it has none. Only its own members are
  ;; looked at, never those of objects nested in it.
  (func $member (param $obj i32) (param $end i32) (param $key i32) (param $len i32) (result i32)
    (local $p i32) (local $key_end i32) (local $hit i32)
    (if (i32.or (i32.ge_u (local.get $obj) (local.get $end))
                (i32.ne (i32.load8_u (local.get $obj)) (i32.const 123)))
      (then (return (i32.const -1))))
    (local.set $p (i32.add (local.get $obj) (i32.const 1)))
    (loop $next
      (local.set $p (call $skip_space (local.get $p) (local.get $end)))
      (local.set $key_end (call $string_end (local.get $p) (local.get $end)))
      (if (i32.lt_s (local.get $key_end) (i32.const 0)) (then (return (i32.const -1))))
      (local.set $hit (i32.and
        (i32.eq (i32.sub (i32.sub (local.get $key_end) (local.get $p)) (i32.const 1)) (local.get $len))
        (call $equal (i32.add (local.get $p) (i32.const 1)) (local.get $key) (local.get $len))))
      (local.set $p (call $skip_space (i32.add (local.get $key_end) (i32.const 1)) (local.get $end)))
      (if (i32.or (i32.ge_u (local.get $p) (local.get $end))
                  (i32.ne (i32.load8_u (local.get $p)) (i32.const 58))) ;; ':'
        (then (return (i32.const -1))))
      (local.set $p (call $skip_space (i32.add (local.get $p) (i32.const 1)) (local.get $end)))
      (if (local.get $hit) (then (return (local.get $p))))
      (local.set $p (call $skip_value (local.get $p) (local.get $end)))
      (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))
      (local.set $p (call $skip_space (local.get $p) (local.get $end)))
      (if (i32.and (i32.lt_u (local.get $p) (local.get $end))
                   (i32.eq (i32.load8_u (local.get $p)) (i32.const 44))) ;; ','
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next))))
    (i32.const -1))

  (func $main (export "_start")
    (local $len i32) (local $end i32) (local $data i32) (local $name i32) (local $name_end i32)
    (local $subject i32) (local $subject_end i32) (local $o i32) (local $obj i32)
    ;; Read the whole event.
    (block $eof
      (loop $read
        (if (i32.gt_u (local.get $len) (global.get $max_in))
          (then (call $fail (i32.const 416) (i32.const 31) (i32.const 65))))
        (i32.store (global.get $iov) (i32.add (global.get $in) (local.get $len)))
        (i32.store offset=4 (global.get $iov)
          (i32.sub (i32.add (global.get $max_in) (i32.const 1)) (local.get $len)))
        (if (call $fd_read (i32.const 0) (global.get $iov) (i32.const 1) (global.get $count))
          (then (call $fail (i32.const 448) (i32.const 28) (i32.const 1))))
        (br_if $eof (i32.eqz (i32.load (global.get $count))))
        (local.set $len (i32.add (local.get $len) (i32.load (global.get $count))))
        (br $read)))
    (local.set $end (i32.add (global.get $in) (local.get $len)))

    ;; data.name: a non-empty string member of the envelope's `data` object.
    (local.set $obj (call $skip_space (global.get $in) (local.get $end)))
    (local.set $data (call $member (local.get $obj) (local.get $end) (i32.const 64) (i32.const 4)))
    (local.set $name (i32.const -1))
    (if (i32.ge_s (local.get $data) (i32.const 0))
      (then (local.set $name
        (call $member (local.get $data) (local.get $end) (i32.const 80) (i32.const 4)))))
    (local.set $name_end (i32.const -1))
    (if (i32.ge_s (local.get $name) (i32.const 0))
      (then (local.set $name_end (call $string_end (local.get $name) (local.get $end)))))
    (if (i32.le_s (local.get $name_end) (i32.add (local.get $name) (i32.const 1)))
      (then (call $fail (i32.const 352) (i32.const 45) (i32.const 65))))

    ;; The reply, with the event's subject when it has one.
    (local.set $o (call $append (global.get $out) (i32.const 128) (i32.const 30)))
    (local.set $subject (call $member (local.get $obj) (local.get $end) (i32.const 96) (i32.const 7)))
    (if (i32.ge_s (local.get $subject) (i32.const 0))
      (then
        (local.set $subject_end (call $string_end (local.get $subject) (local.get $end)))
        (if (i32.gt_s (local.get $subject_end) (local.get $subject))
          (then
            (local.set $o (call $append (local.get $o) (i32.const 192) (i32.const 11)))
            (local.set $o (call $append (local.get $o) (local.get $subject)
              (i32.add (i32.sub (local.get $subject_end) (local.get $subject)) (i32.const 1))))))))
    (local.set $o (call $append (local.get $o) (i32.const 224) (i32.const 65)))
    (local.set $o (call $append (local.get $o) (i32.add (local.get $name) (i32.const 1))
      (i32.sub (local.get $name_end) (i32.add (local.get $name) (i32.const 1)))))
    (local.set $o (call $append (local.get $o) (i32.const 320) (i32.const 5)))
    (if (call $write (i32.const 1) (global.get $out) (i32.sub (local.get $o) (global.get $out)))
      (then (call $proc_exit (i32.const 1))))
    (drop (call $write (i32.const 2) (i32.const 480) (i32.const 14)))))
