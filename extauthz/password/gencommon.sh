#!/bin/sh
# Regenerates common.txt, the common passwords refused at sign-up and on
# change, from zxcvbn's password list (Dropbox's zxcvbn, MIT; the Go port
# github.com/trustelem/zxcvbn carries it as data/passwords.txt with counts).
# Run by `go generate ./extauthz/password/`; byte for byte reproducible.
set -eu
module=github.com/trustelem/zxcvbn@v1.0.1
dir=$(GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
{
	echo "# Common passwords of 8 to 64 characters, most used first, one a line."
	echo "# Derived from zxcvbn's passwords list as carried by $module"
	echo "# (data/passwords.txt; zxcvbn: Copyright (c) 2012-2016 Dan Wheeler and Dropbox, Inc.,"
	echo "# MIT License; the Go port: Copyright (c) 2018 Vincent Vanackere and Trustelem, MIT License)."
	echo "# Shorter ones are refused by the length rule anyway. Regenerate: go generate ./extauthz/password/"
	awk '{print $1}' "$dir/data/passwords.txt" | LC_ALL=C awk 'length($0) >= 8 && length($0) <= 64'
} >common.txt
