package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestGreetsByName(t *testing.T) {
	got, err := greeting([]byte(`{"name":"Ada"}`))
	if err != nil || got != "Hello, Ada!" {
		t.Fatalf("greeting = %q, %v", got, err)
	}
}

func TestNoNameIsFatal(t *testing.T) {
	var stdout, stderr bytes.Buffer
	event := `{"type":"com.example.hello","data":{"nickname":"ada"}}`
	if code := run(strings.NewReader(event), &stdout, &stderr); code != exDataErr {
		t.Fatalf("exit status %d, want %d", code, exDataErr)
	}
	if !strings.Contains(stderr.String(), "data.name") || stdout.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}
