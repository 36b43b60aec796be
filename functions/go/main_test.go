package main

import (
	"strings"
	"testing"
)

func TestCheckSumsInCents(t *testing.T) {
	o := Order{OrderID: "o-1", Currency: "EUR", Items: []Item{
		{SKU: "A", Qty: "3", UnitPrice: "0.1"},
		{SKU: "B", Qty: "1", UnitPrice: "0.2"},
	}}
	o.ShipTo.Country = "NL"
	acc, problems := check(o)
	if len(problems) != 0 || acc.Total != 0.5 || acc.Units != 4 {
		t.Fatalf("got %+v, %v", acc, problems)
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	o := Order{OrderID: "o-2", Currency: "XBT", Items: []Item{
		{SKU: "A", Qty: "0", UnitPrice: "5"},
		{SKU: "A", Qty: "1.5", UnitPrice: "-1"},
	}}
	_, problems := check(o)
	got := strings.Join(problems, "; ")
	for _, want := range []string{"currency", "shipTo.country", "items[0].qty", "items[1].sku", "items[1].qty", "items[1].unitPrice"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
}
