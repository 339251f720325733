module probescope.bench/load

go 1.22
