# Thin wrapper: each target runs one script (see README.md).
.PHONY: all export status baseline check check-full check-stress check-bisect check-asan check-rdma bench clean help

all:
	@scripts/all

export:
	@scripts/export

status:
	@scripts/series-status

baseline:
	@scripts/baseline

check:
	@scripts/check $(if $(ONLY),--only $(ONLY))

check-full:
	@scripts/check-full

check-stress:
	@scripts/check-stress

check-bisect:
	@scripts/check-bisect

check-asan:
	@scripts/check-asan

check-rdma:
	@scripts/check-rdma

bench:
	@scripts/bench

clean:
	@scripts/clean

help:
	@sed -n 's/^## //p' README.md
