# Reads a NoCloud network-config (netplan-style version 2, or version 1) and
# prints one line per interface:
#   id|mac|set-name|dhcp(0/1)|addresses (space separated)|gateway|netmask|nameservers
# It is a small YAML-subset reader (block mappings, block and flow lists,
# comments, quotes), enough for what cloud-init documents for NoCloud.
function indent_of(s) { match(s, /^ */); return RLENGTH }
function strip(v) {
    gsub(/^[ \t]+/, "", v); gsub(/[ \t]+$/, "", v)
    if (v ~ /^".*"$/ || v ~ /^'.*'$/) v = substr(v, 2, length(v) - 2)
    return v
}
function flow(v,   arr, n, i, x, out) {
    gsub(/\[|\]/, "", v); n = split(v, arr, ","); out = ""
    for (i = 1; i <= n; i++) { x = strip(arr[i]); if (x != "") out = out (out == "" ? "" : " ") x }
    return out
}
function add(list, v) { return list (list == "" ? "" : " ") v }
function path(   i, p) { p = ""; for (i = 1; i <= sp; i++) p = p "/" skey[i]; return p }
function iface(id) { if (!(id in known)) { known[id] = 1; order[++nif] = id } }
function truthy(v) { v = tolower(v); return v == "true" || v == "yes" || v == "on" }
function leaf(key, val,   p, n, c, id, k, s) {
    p = path()
    # version 2: .../ethernets/<id>/...
    if (match(p, /\/ethernets\/[^\/]+/)) {
        id = substr(p, RSTART + 11, RLENGTH - 11); iface(id)
        s = substr(p, RSTART + RLENGTH)
        gsub(/\/-[0-9]+/, "", s)
        if (s == "") {
            if (key == "dhcp4") dhcp[id] = truthy(val)
            else if (key == "gateway4") gw[id] = val
            else if (key == "set-name") sname[id] = val
            else if (key == "addresses") addrs[id] = add(addrs[id], flow(val))
        } else if (s == "/match") {
            if (key == "macaddress") mac[id] = tolower(val)
            else if (key == "name") sname[id] = sname[id] == "" ? val : sname[id]
        } else if (s == "/addresses" && key == "-") addrs[id] = add(addrs[id], val)
        else if (s == "/nameservers" && key == "addresses") dns[id] = add(dns[id], flow(val))
        else if (s == "/nameservers/addresses" && key == "-") dns[id] = add(dns[id], val)
        else if (s == "/routes") {
            k = curitem()
            if (key == "to") rto[k] = val
            else if (key == "via") { rvia[k] = val; rid[k] = id }
        }
        return
    }
    # version 1: /config/-N/... (optionally under /network)
    if (match(p, /\/config\/-[0-9]+/)) {
        id = substr(p, RSTART + 8, RLENGTH - 8)
        s = substr(p, RSTART + RLENGTH)
        if (s == "") {
            if (key == "type") typ[id] = val
            else if (key == "name") { sname[id] = val; iface(id) }
            else if (key == "mac_address") { mac[id] = tolower(val); iface(id) }
            else if (key == "address" && typ[id] == "nameserver") gdns = add(gdns, flow(val))
        } else if (s == "/address" && key == "-" && typ[id] == "nameserver") gdns = add(gdns, val)
        else if (s ~ /^\/subnets\/-[0-9]+$/) {
            iface(id)
            if (key == "type") { if (val ~ /^dhcp/) dhcp[id] = 1 }
            else if (key == "address") addrs[id] = add(addrs[id], val)
            else if (key == "netmask") mask[id] = val
            else if (key == "gateway") gw[id] = val
            else if (key == "dns_nameservers") dns[id] = add(dns[id], flow(val))
        } else if (s ~ /^\/subnets\/-[0-9]+\/dns_nameservers$/ && key == "-") dns[id] = add(dns[id], val)
    }
}
function curitem(   i) { for (i = sp; i >= 1; i--) if (skey[i] ~ /^-[0-9]+$/) return skey[i]; return "" }
function keyline(t, ind,   k, v, c, n, kv, i) {
    c = index(t, ":")
    if (c == 0) return
    k = strip(substr(t, 1, c - 1)); v = strip(substr(t, c + 1))
    if (v == "") { sp++; sind[sp] = ind; skey[sp] = k }
    else if (v ~ /^\{.*\}$/) {
        # flow mapping: {dhcp4: true, set-name: eth0}
        sp++; sind[sp] = ind; skey[sp] = k
        gsub(/^\{|\}$/, "", v); n = split(v, kv, ",")
        for (i = 1; i <= n; i++) { c = index(kv[i], ":"); if (c) leaf(strip(substr(kv[i], 1, c - 1)), strip(substr(kv[i], c + 1))) }
        sp--
    } else leaf(k, v)
}
{
    line = $0
    sub(/\r$/, "", line)
    if (line ~ /^[ \t]*#/) next
    sub(/[ \t]+#.*$/, "", line)
    if (line ~ /^[ \t]*$/) next
    ind = indent_of(line); t = substr(line, ind + 1)
    if (t ~ /^-( |$)/) {
        while (sp > 0 && (sind[sp] > ind || (sind[sp] == ind && skey[sp] ~ /^-[0-9]+$/))) sp--
        sp++; sind[sp] = ind; skey[sp] = "-" (++items)
        t = substr(t, 2); n = indent_of(t); t = substr(t, n + 1)
        if (t == "") next
        if (t ~ /^[^"'\[][^:]*:( |$)/) { keyline(t, ind + 1 + n) }
        else { sp--; leaf("-", strip(t)) }
        next
    }
    while (sp > 0 && sind[sp] >= ind) sp--
    keyline(t, ind)
}
END {
    for (k in rvia) if (rto[k] == "default" || rto[k] == "0.0.0.0/0") if (gw[rid[k]] == "") gw[rid[k]] = rvia[k]
    for (i = 1; i <= nif; i++) {
        id = order[i]
        if (typ[id] != "" && typ[id] != "physical") continue
        d = dns[id]; if (d == "") d = gdns
        print id "|" mac[id] "|" sname[id] "|" (dhcp[id] ? 1 : 0) "|" addrs[id] "|" gw[id] "|" mask[id] "|" d
    }
}
