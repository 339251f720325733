module example.com/workapp

go 1.21
