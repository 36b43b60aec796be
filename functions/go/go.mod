module sluice.dev/examples/order-check

go 1.24
