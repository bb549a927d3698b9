# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_zcp_global_optspecs
    string join \n h/help V/version
end

function __fish_zcp_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_zcp_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_zcp_using_subcommand
    set -l cmd (__fish_zcp_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c zcp -n "__fish_zcp_needs_command" -s h -l help -d 'Print help'
complete -c zcp -n "__fish_zcp_needs_command" -s V -l version -d 'Print version'
complete -c zcp -n "__fish_zcp_needs_command" -f -a "send" -d 'Send files, directory trees (-r) or stdin to a listening `zcp recv`, or (--listen) to one that connects'
complete -c zcp -n "__fish_zcp_needs_command" -f -a "recv" -d 'Receive one transfer (with -k, many) into a directory, a file or stdout, listening or (--connect) from a listening sender'
complete -c zcp -n "__fish_zcp_needs_command" -f -a "bench" -d 'Measure zcp on loopback: default, --checksum none, --no-zerocopy and --checksum blake3'
complete -c zcp -n "__fish_zcp_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s l -l listen -d 'Listen on [ADDR:]PORT (without an address, all interfaces; port 0 picks a free one, printed as `zcp: listening on ADDR:PORT`) and send to the first receiver that connects with `zcp recv --connect`, for when the sender is the reachable machine. Without ZCP_KEY or --key-file, prints a one-time key for the receiver' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l name -d 'Name the receiver gives stdin (`-`) [default: stdin], or the one file sent [default: its file name]. May start with `-`' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l limit -d 'Send at most RATE bytes (not bits) per second, e.g. 100M, 1G or 512K (powers of 1024; at least 1K). The kernel paces the socket (SO_MAX_PACING_RATE), so the bytes still move with sendfile/splice' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l bind -d 'Connect from this local address: an IPv4 or IPv6 address of this machine, without a port (the kernel picks one). With --listen, give the address there instead' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l retries -d 'After a dropped connection, connect again up to N times (waiting 1 s, 2 s, 4 s, ... up to 30 s between tries) and go on where the transfer stopped: files the receiver already verified are not sent again (implies --resume). Not for stdin or a fifo, nor with --listen' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -s P -l parallel -d 'Move files larger than 8 MiB over N TCP connections at once (1 to 16), each with its own zero-copy path, with blocks hashed on every core at both ends. Only when this sender connects (not with --listen)' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l checksum -d 'Verification of the payload; both ends must use the same value. `blake3` verifies as strongly and hashes several times faster per core; `none` is for trusted links: nothing is compared and the summary says "unverified"' -r -f -a "sha256\t'SHA-256, computed on both ends and compared before commit'
blake3\t'BLAKE3: the same guarantee, several times faster per core'
none\t'No verification (trusted links only); summaries say "unverified"'"
complete -c zcp -n "__fish_zcp_using_subcommand send" -l timeout -d 'Seconds within which the whole handshake (authentication included) must be done, counted from the connection, so a silent, slow or wrong peer cannot hold zcp' -r
complete -c zcp -n "__fish_zcp_using_subcommand send" -l json-file -d 'Write that JSON object to FILE instead (created or emptied first; with recv -k, one line per transfer); stderr stays as it is' -r -F
complete -c zcp -n "__fish_zcp_using_subcommand send" -l key-file -d 'Read the shared key from FILE (its bytes, without a final newline) instead of the ZCP_KEY environment variable. FILE must be yours and readable by you alone (mode 600 or 400)' -r -F
complete -c zcp -n "__fish_zcp_using_subcommand send" -s r -l recursive -d 'Send directories and everything in them'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s L -l dereference -d 'Follow symbolic links found inside directories and send what they point to (links named on the command line are always followed)'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s n -l no-clobber -d 'Ask the receiver not to replace anything that already exists there'
complete -c zcp -n "__fish_zcp_using_subcommand send" -l resume -d 'Make large files resumable: they travel in verified 8 MiB blocks, and if the transfer breaks the receiver keeps what it verified (in a hidden .NAME.zcp-partial file beside the final name). A later `zcp send --resume` of the same, unchanged file to the same place sends only the blocks still missing'
complete -c zcp -n "__fish_zcp_using_subcommand send" -l raw -d 'Send the one SOURCE (a file, or `-` for stdin) as plain bytes, to a peer that speaks no zcp: `nc -l`, socat or `zcp recv --raw`. No handshake, key, name or checksum: nothing is verified. After the last byte zcp shuts down its side and waits for the peer to close (at most 5 s once the peer acknowledged every byte); a failure resets the connection instead, so the peer can tell'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s q -l quiet -d 'Print only errors and warnings (and, when listening, the `listening on` line)'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s v -l verbose -d 'Name the mechanism that moved the bytes (sendfile, splice or read/write) and why, and print the digest in sha256sum format'
complete -c zcp -n "__fish_zcp_using_subcommand send" -l no-zerocopy -d 'Use plain read/write instead of sendfile/splice'
complete -c zcp -n "__fish_zcp_using_subcommand send" -l json -d 'At the end, print one JSON object on one line to stderr (its last line) instead of the summary and the progress bar: status, exit code, bytes, rate and every entry with its digest (docs/JSON.md)'
complete -c zcp -n "__fish_zcp_using_subcommand send" -l no-auth -d 'Do not authenticate: for trusted links only. An end that listens then serves anyone who can reach its port; both ends must use it'
complete -c zcp -n "__fish_zcp_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s l -l listen -d 'Address and port to listen on; without an address, all interfaces (IPv6 and IPv4). Port 0 picks a free port; the bound address is printed on stderr as `zcp: listening on ADDR:PORT`' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l connect -d 'Connect to a sender that listens (`zcp send --listen`) at HOST:PORT, IPV4:PORT or [IPV6]:PORT instead of listening, for when the sender is the reachable machine; needs its key (ZCP_KEY or --key-file)' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l bind -d 'With --connect: connect from this local address, an IPv4 or IPv6 address of this machine, without a port (the kernel picks one)' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l max-connections -d 'With --keep-open: how many connections are served at once; one more is told the receiver is busy' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l idle-timeout -d 'Seconds the sender may stay silent during a transfer before the receiver gives up on it (the sender keeps an idle session alive on its own, so only a stuck or vanished sender hits this)' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l checksum -d 'Verification of the payload; both ends must use the same value. `blake3` verifies as strongly and hashes several times faster per core; `none` is for trusted links: nothing is compared and the summary says "unverified"' -r -f -a "sha256\t'SHA-256, computed on both ends and compared before commit'
blake3\t'BLAKE3: the same guarantee, several times faster per core'
none\t'No verification (trusted links only); summaries say "unverified"'"
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l timeout -d 'Seconds within which the whole handshake (authentication included) must be done, counted from the connection, so a silent, slow or wrong peer cannot hold zcp' -r
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l json-file -d 'Write that JSON object to FILE instead (created or emptied first; with recv -k, one line per transfer); stderr stays as it is' -r -F
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l key-file -d 'Read the shared key from FILE (its bytes, without a final newline) instead of the ZCP_KEY environment variable. FILE must be yours and readable by you alone (mode 600 or 400)' -r -F
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l fsync -d 'Flush each file and its directory to disk before reporting success'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s n -l no-clobber -d 'Never replace an existing file, link or directory entry in DEST: such entries are skipped (their bytes are still read off the connection) and reported; existing directories are still entered'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s k -l keep-open -d 'Keep listening after a transfer and serve several senders at once (each transfer is reported on its own; stop with Ctrl-C)'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l raw -d 'Take one plain TCP connection (from nc, socat or `zcp send --raw`) and write the bytes it carries to DEST, a file path or `-` for stdout. No handshake and no key: whoever connects first is served, and nothing is verified. The file appears under its name only when the sender closes the connection cleanly, as it also does when it stopped early; a reset leaves nothing'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s q -l quiet -d 'Print only errors and warnings (and, when listening, the `listening on` line)'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s v -l verbose -d 'Name the mechanism that moved the bytes (sendfile, splice or read/write) and why, and print the digest in sha256sum format'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l no-zerocopy -d 'Use plain read/write instead of sendfile/splice'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l json -d 'At the end, print one JSON object on one line to stderr (its last line) instead of the summary and the progress bar: status, exit code, bytes, rate and every entry with its digest (docs/JSON.md)'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -l no-auth -d 'Do not authenticate: for trusted links only. An end that listens then serves anyone who can reach its port; both ends must use it'
complete -c zcp -n "__fish_zcp_using_subcommand recv" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zcp -n "__fish_zcp_using_subcommand bench" -l size -d 'Size of the generated test file, e.g. 256M or 1G (binary units)' -r
complete -c zcp -n "__fish_zcp_using_subcommand bench" -l runs -d 'Measured runs per case, after one warm-up; the median is reported' -r
complete -c zcp -n "__fish_zcp_using_subcommand bench" -l dir -d 'Directory for the test files [default: $TMPDIR or /tmp]' -r -F
complete -c zcp -n "__fish_zcp_using_subcommand bench" -s h -l help -d 'Print help'
complete -c zcp -n "__fish_zcp_using_subcommand help; and not __fish_seen_subcommand_from send recv bench help" -f -a "send" -d 'Send files, directory trees (-r) or stdin to a listening `zcp recv`, or (--listen) to one that connects'
complete -c zcp -n "__fish_zcp_using_subcommand help; and not __fish_seen_subcommand_from send recv bench help" -f -a "recv" -d 'Receive one transfer (with -k, many) into a directory, a file or stdout, listening or (--connect) from a listening sender'
complete -c zcp -n "__fish_zcp_using_subcommand help; and not __fish_seen_subcommand_from send recv bench help" -f -a "bench" -d 'Measure zcp on loopback: default, --checksum none, --no-zerocopy and --checksum blake3'
complete -c zcp -n "__fish_zcp_using_subcommand help; and not __fish_seen_subcommand_from send recv bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
