# berth build, test and benchmark entry points.
export GOFLAGS := -buildvcs=false -tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,containers_image_ostree_stub
BIN := bin

.PHONY: all build test lint bench clean

all: build

build:
	go build -o $(BIN)/ ./cmd/berthd ./cmd/berth

# Tests need root: they run real runc, conmon, CNI and overlay storage.
test: build
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above"; exit 1)
	go vet ./...
	go test -count=1 -timeout 25m ./...

lint:
	gofmt -l . | (! grep .)
	go vet ./...

bench: build
	go run ./bench

clean:
	rm -rf $(BIN)
