"""The file manager's sans-I/O core (ftreeFileMgrCell, issue 17): folders as signed manifests,
private bytes as chunked AES-256-GCM, three-way merge of concurrent versions. No sockets, clocks or
randomness here: keys, times and bytes come from the caller (the CLI or the conduit, where the wallet
is unlocked; never a cell)."""
