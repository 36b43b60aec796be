// Order check handler (Sluice command ABI): reads a `com.example.order.placed` CloudEvent
// from stdin, validates the order and emits `com.example.order.accepted` with its totals.
// An impossible order (no items, a negative quantity, a country nobody ships to) exits 65,
// so Sluice dead-letters it at once: retrying cannot make it valid.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

const exDataErr = 65

// Event is the part of a structured-mode CloudEvent this handler reads and writes.
type Event struct {
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

type Order struct {
	OrderID  string `json:"orderId"`
	Currency string `json:"currency"`
	Items    []Item `json:"items"`
	ShipTo   struct {
		Country string `json:"country"`
	} `json:"shipTo"`
}

type Item struct {
	SKU       string      `json:"sku"`
	Qty       json.Number `json:"qty"`
	UnitPrice json.Number `json:"unitPrice"`
}

type Accepted struct {
	OrderID  string  `json:"orderId"`
	Lines    int     `json:"lines"`
	Units    int64   `json:"units"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency"`
	Country  string  `json:"country"`
}

var currencies = map[string]bool{"EUR": true, "USD": true, "GBP": true}
var countries = map[string]bool{"NL": true, "BE": true, "DE": true, "FR": true, "GB": true, "US": true}

const maxLines, maxQty = 100, 1000

// check is the pure decision: the order's totals, or every reason it can never be filled.
func check(o Order) (Accepted, []string) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if strings.TrimSpace(o.OrderID) == "" {
		add("orderId: must not be empty")
	}
	if !currencies[o.Currency] {
		add("currency: %q is not one of EUR, GBP, USD", o.Currency)
	}
	if !countries[o.ShipTo.Country] {
		add("shipTo.country: we do not ship to %q", o.ShipTo.Country)
	}
	if len(o.Items) == 0 {
		add("items: an order needs at least one item")
	}
	if len(o.Items) > maxLines {
		add("items: at most %d lines, got %d", maxLines, len(o.Items))
	}
	acc := Accepted{OrderID: o.OrderID, Lines: len(o.Items), Currency: o.Currency, Country: o.ShipTo.Country}
	var cents int64
	seen := map[string]int{}
	for i, it := range o.Items {
		if it.SKU == "" {
			add("items[%d].sku: must not be empty", i)
		} else if j, dup := seen[it.SKU]; dup {
			add("items[%d].sku: %s repeats items[%d]", i, it.SKU, j)
		} else {
			seen[it.SKU] = i
		}
		qty, err := it.Qty.Int64()
		switch {
		case err != nil:
			add("items[%d].qty: must be a whole number", i)
		case qty < 1 || qty > maxQty:
			add("items[%d].qty: must be between 1 and %d, got %d", i, maxQty, qty)
		}
		price, err := it.UnitPrice.Float64()
		switch {
		case err != nil:
			add("items[%d].unitPrice: must be a number", i)
		case price < 0:
			add("items[%d].unitPrice: must not be negative", i)
		}
		acc.Units += qty
		// Sum in cents so 0.1 + 0.2 stays 0.30.
		cents += qty * int64(price*100+0.5)
	}
	acc.Total = float64(cents) / 100
	return acc, problems
}

func run(stdin io.Reader, stdout, stderr io.Writer) int {
	var in Event
	dec := json.NewDecoder(io.LimitReader(stdin, 1<<20))
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(stderr, "error: stdin is not a JSON CloudEvent: %v\n", err)
		return exDataErr
	}
	var order Order
	data := json.NewDecoder(strings.NewReader(string(in.Data)))
	data.UseNumber()
	if err := data.Decode(&order); err != nil {
		fmt.Fprintf(stderr, "error: data is not an order: %v\n", err)
		return exDataErr
	}
	acc, problems := check(order)
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "error: order %s is impossible: %s\n", order.OrderID, strings.Join(problems, "; "))
		return exDataErr
	}
	body, _ := json.Marshal(acc)
	out := Event{Type: "com.example.order.accepted", Subject: in.Subject, DataContentType: "application/json", Data: body}
	line, _ := json.Marshal(out)
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return 1
	}
	fmt.Fprintf(stderr, "info: order %s accepted: %d units, %.2f %s\n", acc.OrderID, acc.Units, acc.Total, acc.Currency)
	return 0
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
}
