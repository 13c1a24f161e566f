#!/bin/sh
# Prints a greeting; the `test` task checks it.
echo "hello, ${1:-world}"
