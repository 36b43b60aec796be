// {{name}}: a Sluice handler (command ABI, GOOS=wasip1). Reads a `com.example.hello` CloudEvent
// as JSON on stdin and writes the reply, `com.example.greeting`, as one JSON line on stdout.
// An event without `data.name` can never succeed: exit 65, fatal, and the last `error:` line
// on stderr says why; the event goes to the dead-letter bus without retries.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

const exDataErr = 65

// Event is the part of a structured-mode CloudEvent this handler reads and writes.
type Event struct {
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// greeting is the decision, apart from input and output.
func greeting(data json.RawMessage) (string, error) {
	var hello struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &hello); err != nil || hello.Name == "" {
		return "", errors.New("data.name: must be a non-empty string")
	}
	return "Hello, " + hello.Name + "!", nil
}

func run(stdin io.Reader, stdout, stderr io.Writer) int {
	var in Event
	if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&in); err != nil {
		fmt.Fprintf(stderr, "error: stdin is not a JSON CloudEvent: %v\n", err)
		return exDataErr
	}
	text, err := greeting(in.Data)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return exDataErr
	}
	body, _ := json.Marshal(map[string]string{"greeting": text})
	line, _ := json.Marshal(Event{Type: "com.example.greeting", Subject: in.Subject,
		DataContentType: "application/json", Data: body})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return 1
	}
	fmt.Fprintf(stderr, "info: %s\n", text)
	return 0
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
}
