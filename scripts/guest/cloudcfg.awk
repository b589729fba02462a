# Reads a #cloud-config user-data document and prints the parts the test
# guest honours, one per line:
#   hostname <name>          (top-level hostname:)
#   key <ssh public key>     (ssh_authorized_keys, top level or under users:)
#   runcmd <shell command>   (runcmd: entries given as strings)
function indent_of(s) { match(s, /^ */); return RLENGTH }
function strip(v) {
    gsub(/^[ \t]+/, "", v); gsub(/[ \t]+$/, "", v)
    if (v ~ /^".*"$/ || v ~ /^'.*'$/) v = substr(v, 2, length(v) - 2)
    return v
}
{
    line = $0; sub(/\r$/, "", line)
    if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/) next
    ind = indent_of(line); t = substr(line, ind + 1)
    item = (t ~ /^- /)
    # leave a list when a line is neither deeper nor a sibling item
    if (list != "" && !(ind > lind || (item && ind >= lind))) list = ""
    if (list != "" && item) {
        v = strip(substr(t, 3))
        if (list == "keys") print "key " v
        else if (list == "runcmd" && v !~ /^\[/) print "runcmd " v
        next
    }
    if (item) { t = substr(t, 3); ind += 2 }
    c = index(t, ":"); if (c == 0) next
    k = strip(substr(t, 1, c - 1)); v = strip(substr(t, c + 1))
    if (k == "ssh_authorized_keys" || k == "ssh-authorized-keys") {
        if (v == "") { list = "keys"; lind = ind }
        else if (v ~ /^\[/) { gsub(/^\[|\]$/, "", v); n = split(v, a, ","); for (i = 1; i <= n; i++) print "key " strip(a[i]) }
    } else if (k == "runcmd" && ind == 0 && v == "") { list = "runcmd"; lind = ind }
    else if (k == "hostname" && ind == 0 && v != "") print "hostname " v
}
