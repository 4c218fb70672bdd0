#!/usr/bin/env bash
# Counts the branches on scope (process / host / Redis strict / Redis leased) in the admission
# code of a git ref: tests of the members and options that used to pick the scope at each call
# (cluster_, leased_, shared_, cluster.store, shared_region) and of a permit's holder.
#
#   scripts/count-scope-branches.sh [<ref>=HEAD]
#
# Before issue 14 lib/ was flat; after it the admission code is lib/admission/. The TryLocal
# calls of leased mode (`if (leased_.TryLocal(...))`) are not scope branches and are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-HEAD}
PATTERN='cluster_ (!=|==) nullptr|cluster_ \?|leased_ (!=|==) nullptr|if \(leased_ |if \(shared_\)|shared_ \?|cluster\.store (!=|==) nullptr|holder_? (!=|==)|case (Permit::)?Holder|shared_region\.empty\(\)'
FILES=(lib/admission/'*.cc' lib/rate_limiter.cc lib/leaky_bucket.cc lib/token_budget.cc
       lib/concurrency_limiter.cc lib/gcra.cc lib/admission_options.cc)
git grep -cE "$PATTERN" "$REF" -- "${FILES[@]}" | sed "s|^$REF:||" |
  awk -F: '{ print; total += $2 } END { print "total: " total }'
