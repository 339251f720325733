module probescope.example/go-service

go 1.22
