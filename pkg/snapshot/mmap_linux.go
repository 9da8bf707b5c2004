package snapshot

import "syscall"

// mmapPopulate maps a database's pages in at once: a check reads them all.
const mmapPopulate = syscall.MAP_POPULATE
