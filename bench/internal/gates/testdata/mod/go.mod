module example.com/gatestest

go 1.26
