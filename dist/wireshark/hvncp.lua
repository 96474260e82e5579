-- hvncp.lua: a Wireshark dissector for HVNCP v2, the raw-Ethernet protocol between the
-- host monitor (hmd) and the VM agents (vmmd) of hvha.
--
-- Specification: docs/hvncp.md in the hvha repository (§1 framing, §2 header and
-- checksum, §4 messages, §3.6 fragmentation, §7 authenticated frames, §11 application
-- reports). How to install and read it: docs/wireshark.md.
--
-- Lua 5.2, Wireshark 4.0 API. Installed per user as
--   ~/.local/lib/wireshark/plugins/hvncp.lua
-- or run once with
--   tshark -X lua_script:hvncp.lua -r capture.pcap
--
-- Preferences (Edit > Preferences > Protocols > HVNCP, or -o hvncp.<name>:<value>):
--   ethertype  the EtherType HVNCP runs on (0x0600 by default, as in hmd/vmmd)
--   heuristic  also try HVNCP on frames of other EtherTypes (off by default)
--   auth_keys  keys to verify authentication tags: "<id> <64 hex digits>", several
--              separated by ',' or ';' (the line of an hvha key file)
--
-- Every frame is handled without raising a Lua error: whatever does not follow the
-- specification is shown with an expert item (Malformed, Bad checksum, …).

local hvncp = Proto("hvncp", "HVNCP (HM-VMM Network Communication Protocol)")

local HEADER_LEN = 8
local TRAILER_LEN = 25 -- key id (1) + counter (8) + tag (16), docs/hvncp.md §7.1
local DEFAULT_ETHERTYPE = 0x0600
-- A reliable packet resent within this span is a retransmission: the sender's
-- retransmission span (12.6 s) plus one rto (docs/hvncp.md §3.4, §3.5).
local RETRANSMISSION_SPAN = 12.8
-- The EtherType the dissector is registered on (the preference, once applied).
local registered_on

---------------------------------------------------------------------------------------
-- Fields
---------------------------------------------------------------------------------------

local FLAG = {
    { bit = 0x80, name = "ACKR" },
    { bit = 0x40, name = "ACK" },
    { bit = 0x20, name = "BEG" },
    { bit = 0x10, name = "END" },
    { bit = 0x08, name = "PRI" },
    { bit = 0x04, name = "SYN" },
    { bit = 0x02, name = "HEL" },
    { bit = 0x01, name = "Rsv" },
}

local status_vals = { [0] = "Bad", [1] = "Good", [2] = "Unverified" }

local f = {
    version = ProtoField.string("hvncp.version", "Version"),
    ver_major = ProtoField.uint8("hvncp.version.major", "Version major", base.DEC),
    ver_minor = ProtoField.uint8("hvncp.version.minor", "Version minor", base.DEC),
    number = ProtoField.uint8("hvncp.number", "Packet/ack number", base.DEC),
    seq = ProtoField.uint8("hvncp.seq", "Packet number", base.DEC),
    ack = ProtoField.uint8("hvncp.ack", "Acknowledged number", base.DEC),
    flags = ProtoField.uint8("hvncp.flags", "Flags", base.HEX),
    flags_str = ProtoField.string("hvncp.flags.str", "Flags"),
    flag_ackr = ProtoField.bool("hvncp.flags.ackr", "ACKR", 8, { "Set", "Not set" }, 0x80,
        "Acknowledgement requested"),
    flag_ack = ProtoField.bool("hvncp.flags.ack", "ACK", 8, { "Set", "Not set" }, 0x40,
        "Acknowledgement of the packet/ack number"),
    flag_beg = ProtoField.bool("hvncp.flags.beg", "BEG", 8, { "Set", "Not set" }, 0x20,
        "First packet of a message (with SYN: open the reverse direction too)"),
    flag_end = ProtoField.bool("hvncp.flags.end", "END", 8, { "Set", "Not set" }, 0x10,
        "Last packet of a message"),
    flag_pri = ProtoField.bool("hvncp.flags.pri", "PRI", 8, { "Urgent", "Normal" }, 0x08,
        "Priority"),
    flag_syn = ProtoField.bool("hvncp.flags.syn", "SYN", 8, { "Set", "Not set" }, 0x04,
        "Session (re)synchronisation"),
    flag_hel = ProtoField.bool("hvncp.flags.hel", "HEL", 8, { "Set", "Not set" }, 0x02,
        "Hello"),
    flag_rsv = ProtoField.bool("hvncp.flags.rsv", "Rsv", 8, { "Set: authenticated", "Not set" },
        0x01, "Reserved bit: an authentication trailer follows the payload"),
    checksum = ProtoField.uint8("hvncp.checksum", "Checksum", base.HEX),
    checksum_calc = ProtoField.uint8("hvncp.checksum.calculated", "Calculated checksum", base.HEX),
    checksum_status = ProtoField.uint8("hvncp.checksum.status", "Checksum status", base.DEC,
        status_vals),
    frag_index = ProtoField.uint8("hvncp.frag_index", "Fragment index", base.DEC),
    len = ProtoField.uint16("hvncp.len", "Payload length", base.DEC),
    kind = ProtoField.string("hvncp.type", "Packet type"),
    from = ProtoField.string("hvncp.from", "From (monitor or agent)"),
    to = ProtoField.string("hvncp.to", "To (monitor, agent or broadcast)"),
    payload = ProtoField.bytes("hvncp.payload", "Payload"),
    text = ProtoField.string("hvncp.text", "Payload text"),
    padding = ProtoField.bytes("hvncp.padding", "Padding"),

    -- messages (§4)
    verb = ProtoField.string("hvncp.verb", "Verb"),
    args = ProtoField.string("hvncp.args", "Arguments"),
    property = ProtoField.string("hvncp.property", "Property"),
    prop_key = ProtoField.string("hvncp.property.key", "Key"),
    prop_value = ProtoField.string("hvncp.property.value", "Value"),

    hello_id = ProtoField.string("hvncp.hello.id", "Monitor incarnation"),
    hello_secs = ProtoField.uint64("hvncp.hello.secs", "Seconds", base.DEC),
    hello_nanos = ProtoField.uint32("hvncp.hello.nanos", "Nanoseconds", base.DEC),
    hello_pid = ProtoField.uint32("hvncp.hello.pid", "Suffix (pid)", base.DEC),
    hello_time = ProtoField.absolute_time("hvncp.hello.time", "Monitor started", base.UTC),

    syn_role = ProtoField.string("hvncp.syn.role", "SYN of"),
    syn_uuid = ProtoField.string("hvncp.syn.uuid", "UUID"),
    syn_ostype = ProtoField.string("hvncp.syn.ostype", "OS type"),
    syn_vmm_lower = ProtoField.string("hvncp.syn.ver_vmm_lower", "Agent's lowest version"),
    syn_vmm_upper = ProtoField.string("hvncp.syn.ver_vmm_upper", "Agent's highest version"),
    syn_hm_running = ProtoField.string("hvncp.syn.ver_hm_running", "Monitor's version"),
    syn_inc = ProtoField.string("hvncp.syn.inc", "Agent incarnation"),

    start_hb_period = ProtoField.uint32("hvncp.start_hb.period_ms", "Heartbeat period (ms)",
        base.DEC),
    hb_seq = ProtoField.uint64("hvncp.hb.seq", "Heartbeat sequence", base.DEC),
    shdn_reason = ProtoField.string("hvncp.shdn.reason", "Shutdown reason"),
    dbell_vector = ProtoField.uint64("hvncp.dbell.vector", "Doorbell vector", base.HEX),
    dbell_report = ProtoField.bool("hvncp.dbell.new_report", "New report available (0x2)"),
    dbell_critical = ProtoField.bool("hvncp.dbell.critical_failure",
        "Critical application in FAILURE (0x100)"),

    -- application reports (§11)
    report_req = ProtoField.string("hvncp.report.req", "Request id (hex)"),
    report_gen = ProtoField.uint64("hvncp.report.gen", "Report generation", base.DEC),
    report_index = ProtoField.uint8("hvncp.report.index", "Chunk", base.DEC),
    report_count = ProtoField.uint8("hvncp.report.count", "Chunks", base.DEC),
    report_chunk = ProtoField.string("hvncp.report.chunk", "Chunk"),
    report_line = ProtoField.string("hvncp.report.line", "Report line"),

    -- fragmentation and reassembly (§3.6)
    fragment = ProtoField.bytes("hvncp.fragment.data", "Fragment data"),
    fragment_first = ProtoField.framenum("hvncp.fragment.first", "Message begins in frame",
        base.NONE),
    reassembled_in = ProtoField.framenum("hvncp.reassembled_in", "Reassembled in frame",
        base.NONE),
    reassembled_count = ProtoField.uint8("hvncp.reassembled.count", "Fragments", base.DEC),
    reassembled_length = ProtoField.uint32("hvncp.reassembled.length", "Reassembled length",
        base.DEC),

    -- sessions: acknowledgements and retransmissions (§3.4)
    ack_to = ProtoField.framenum("hvncp.ack_to", "Acknowledges frame", base.NONE,
        frametype.ACK),
    ack_rtt = ProtoField.relative_time("hvncp.ack_rtt", "Time since the acknowledged packet"),
    retrans_of = ProtoField.framenum("hvncp.retransmission_of", "Retransmission of frame",
        base.NONE, frametype.RETRANS_PREV),
    dup_ack_of = ProtoField.framenum("hvncp.duplicate_ack_of", "Duplicate of the ACK in frame",
        base.NONE, frametype.DUP_ACK),

    -- authentication trailer (§7)
    auth = ProtoField.bytes("hvncp.auth", "Authentication trailer"),
    auth_key_id = ProtoField.uint8("hvncp.auth.key_id", "Key id", base.DEC),
    auth_counter = ProtoField.uint64("hvncp.auth.counter", "Send counter", base.DEC),
    auth_tag = ProtoField.bytes("hvncp.auth.tag", "Tag (HMAC-SHA256, first 16 bytes)"),
    auth_tag_calc = ProtoField.bytes("hvncp.auth.tag.calculated", "Calculated tag"),
    auth_tag_status = ProtoField.uint8("hvncp.auth.tag.status", "Tag status", base.DEC,
        status_vals),
}

local fields = {}
for _, v in pairs(f) do fields[#fields + 1] = v end
hvncp.fields = fields

local e = {
    truncated = ProtoExpert.new("hvncp.truncated", "Frame too short for the HVNCP header",
        expert.group.MALFORMED, expert.severity.ERROR),
    len_beyond = ProtoExpert.new("hvncp.len_beyond",
        "Payload length runs past the end of the frame",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_checksum = ProtoExpert.new("hvncp.checksum.bad", "Bad checksum",
        expert.group.CHECKSUM, expert.severity.ERROR),
    bad_version = ProtoExpert.new("hvncp.version.unsupported",
        "Major version is not 2: a receiver drops this packet",
        expert.group.PROTOCOL, expert.severity.WARN),
    bad_flags = ProtoExpert.new("hvncp.flags.invalid", "Flag rule broken",
        expert.group.MALFORMED, expert.severity.WARN),
    malformed = ProtoExpert.new("hvncp.malformed", "Malformed message",
        expert.group.MALFORMED, expert.severity.WARN),
    unknown_verb = ProtoExpert.new("hvncp.verb.unknown", "Unknown verb (acknowledged, ignored)",
        expert.group.UNDECODED, expert.severity.NOTE),
    retransmission = ProtoExpert.new("hvncp.retransmission", "Retransmission",
        expert.group.SEQUENCE, expert.severity.NOTE),
    dup_ack = ProtoExpert.new("hvncp.duplicate_ack", "Duplicate acknowledgement",
        expert.group.SEQUENCE, expert.severity.NOTE),
    auth_truncated = ProtoExpert.new("hvncp.auth.truncated",
        "Rsv set but the authentication trailer is incomplete",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_tag = ProtoExpert.new("hvncp.auth.tag.bad", "Bad authentication tag",
        expert.group.CHECKSUM, expert.severity.ERROR),
    no_key = ProtoExpert.new("hvncp.auth.no_key",
        "Tag not verified: no key with this id in the preferences",
        expert.group.SECURITY, expert.severity.CHAT),
    bad_pref = ProtoExpert.new("hvncp.auth.bad_keys", "The auth_keys preference does not parse",
        expert.group.PROTOCOL, expert.severity.WARN),
    internal = ProtoExpert.new("hvncp.internal", "Dissector error",
        expert.group.MALFORMED, expert.severity.ERROR),
}
local experts = {}
for _, v in pairs(e) do experts[#experts + 1] = v end
hvncp.experts = experts

---------------------------------------------------------------------------------------
-- Preferences
---------------------------------------------------------------------------------------

hvncp.prefs.ethertype = Pref.string("EtherType", "0x0600",
    "EtherType HVNCP runs on, hexadecimal (0x88b5) or decimal (hmd and vmmd: 'ethertype', "
    .. "0x0600 by default)")
hvncp.prefs.heuristic = Pref.bool("Try HVNCP on other EtherTypes", false,
    "Heuristic: dissect a frame of an unregistered EtherType as HVNCP when its header, "
    .. "length and checksum fit")
hvncp.prefs.auth_keys = Pref.string("Authentication keys", "",
    "Keys to verify authentication tags, as in an hvha key file: '<id> <64 hex digits>'; "
    .. "several separated by ',' or ';'. Empty: tags are shown but not verified.")

---------------------------------------------------------------------------------------
-- SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) in Lua 5.2 with bit32
---------------------------------------------------------------------------------------

-- Lua 5.2 (Wireshark 4.0) has bit32; Lua 5.3 and later have bitwise operators, which a
-- 5.2 parser refuses, hence load().
local bits = bit32 or load([[
    local M = 0xffffffff
    return {
        band = function(a, b) return (a & b) & M end,
        bxor = function(a, b, c) return (a ~ b ~ (c or 0)) & M end,
        bnot = function(a) return (~a) & M end,
        rshift = function(a, n) return (a & M) >> n end,
        rrotate = function(a, n) a = a & M; return ((a >> n) | (a << (32 - n))) & M end,
    }
]])()
local band, bxor, bnot, rrotate, rshift =
    bits.band, bits.bxor, bits.bnot, bits.rrotate, bits.rshift
local MOD32 = 4294967296

local K256 = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function be32(n)
    return string.char(rshift(n, 24) % 256, rshift(n, 16) % 256, rshift(n, 8) % 256, n % 256)
end

local function sha256(msg)
    local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
    local bits = #msg * 8
    msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64)
        .. be32(math.floor(bits / MOD32)) .. be32(bits % MOD32)
    local w = {}
    for block = 1, #msg, 64 do
        for j = 0, 15 do
            local a, b, c, d = msg:byte(block + 4 * j, block + 4 * j + 3)
            w[j] = ((a * 256 + b) * 256 + c) * 256 + d
        end
        for j = 16, 63 do
            local x, y = w[j - 15], w[j - 2]
            local s0 = bxor(rrotate(x, 7), rrotate(x, 18), rshift(x, 3))
            local s1 = bxor(rrotate(y, 17), rrotate(y, 19), rshift(y, 10))
            w[j] = (w[j - 16] + s0 + w[j - 7] + s1) % MOD32
        end
        local a, b, c, d, e5, f5, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
        for j = 0, 63 do
            local S1 = bxor(rrotate(e5, 6), rrotate(e5, 11), rrotate(e5, 25))
            local ch = bxor(band(e5, f5), band(bnot(e5), g))
            local t1 = (hh + S1 + ch + K256[j + 1] + w[j]) % MOD32
            local S0 = bxor(rrotate(a, 2), rrotate(a, 13), rrotate(a, 22))
            local maj = bxor(band(a, b), band(a, c), band(b, c))
            local t2 = (S0 + maj) % MOD32
            hh, g, f5, e5, d, c, b, a = g, f5, e5, (d + t1) % MOD32, c, b, a, (t1 + t2) % MOD32
        end
        h[1] = (h[1] + a) % MOD32; h[2] = (h[2] + b) % MOD32
        h[3] = (h[3] + c) % MOD32; h[4] = (h[4] + d) % MOD32
        h[5] = (h[5] + e5) % MOD32; h[6] = (h[6] + f5) % MOD32
        h[7] = (h[7] + g) % MOD32; h[8] = (h[8] + hh) % MOD32
    end
    local out = {}
    for i = 1, 8 do out[i] = be32(h[i]) end
    return table.concat(out)
end

local function xor_with(s, byte)
    return (s:gsub(".", function(ch) return string.char(bxor(ch:byte(), byte)) end))
end

local function hmac_sha256(key, msg)
    if #key > 64 then key = sha256(key) end
    key = key .. string.rep("\0", 64 - #key)
    return sha256(xor_with(key, 0x5c) .. sha256(xor_with(key, 0x36) .. msg))
end

local function hex_of(s)
    return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

-- The auth_keys preference, parsed: id -> 32-byte key; nil and a message if it does not
-- parse.
local keys, keys_error = {}, nil

local function parse_keys(text)
    local parsed = {}
    for item in tostring(text or ""):gmatch("[^,;]+") do
        local line = item:match("^%s*(.-)%s*$")
        if line ~= "" and line:sub(1, 1) ~= "#" then
            local id, hex = line:match("^(%d+)%s+(%x+)$")
            id = tonumber(id)
            if not id or id > 255 or #hex ~= 64 then
                return nil, "expected '<id 0-255> <64 hex digits>', got '"
                    .. line:sub(1, 12) .. "…'"
            end
            parsed[id] = (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
        end
    end
    return parsed, nil
end

---------------------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------------------

local function flags_string(flags)
    local names = {}
    for _, fl in ipairs(FLAG) do
        if band(flags, fl.bit) ~= 0 then names[#names + 1] = fl.name end
    end
    if #names == 0 then return "none" end
    return table.concat(names, ",")
end

-- Printable form of untrusted bytes: ASCII 0x20-0x7e kept, everything else escaped.
local function printable(s, max)
    local cut = false
    if max and #s > max then s = s:sub(1, max); cut = true end
    s = s:gsub("[^\32-\126]", function(ch)
        if ch == "\n" then return "\\n" end
        return string.format("\\x%02x", ch:byte())
    end)
    if cut then s = s .. "…" end
    return s
end

-- Decimal digits -> UInt64, or nil if not 1..max digits or above 2^64-1.
local function parse_u64(digits, max)
    if not digits or not digits:match("^%d+$") or #digits > (max or 20) then return nil end
    if #digits == 20 and digits > "18446744073709551615" then return nil end
    local v = UInt64(0)
    for i = 1, #digits do v = v * 10 + tonumber(digits:sub(i, i)) end
    return v
end

local function parse_hex_u64(hex)
    if not hex or not hex:match("^%x+$") or #hex > 16 then return nil end
    return UInt64.fromhex(hex)
end

local UUID_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function valid_version(v)
    local a, b = v:match("^(%d%d?%d?)%.(%d%d?%d?)$")
    return a ~= nil and tonumber(a) <= 255 and tonumber(b) <= 255
end

---------------------------------------------------------------------------------------
-- Per-capture state (filled on the first pass, read on every pass)
---------------------------------------------------------------------------------------

local state

local function reset_state()
    state = {
        sent = {},          -- "src>dst|kind|number" -> { frame, time, sig } first transmission
        acks = {},          -- "src>dst|kind|number" -> { frame, time } last ACK sent
        retrans = {},       -- frame -> frame it retransmits
        roles = {},         -- MAC -> "monitor" | "agent", learned from what it sends
        from = {},          -- frame -> role of its sender, as known at that frame
        to = {},            -- frame -> role of its receiver
        dup_ack = {},       -- frame -> frame of the first copy of this ACK
        ack_to = {},        -- frame -> { frame, time } acknowledged
        partial = {},       -- "src>dst|pri" -> { first, frags = { [index] = bytes }, frames }
        fragment_first = {},-- frame -> first frame of its message
        reassembled = {},   -- frame (the END fragment) -> { bytes, count }
        reassembled_in = {},-- frame -> frame where its message was completed
    }
end
reset_state()

function hvncp.init()
    reset_state()
end

local f_eth_src = Field.new("eth.src")
local f_eth_dst = Field.new("eth.dst")

-- The innermost Ethernet addresses of this frame as 6-byte strings (nil if absent).
local function mac_bytes(field)
    local all = { field() }
    local fi = all[#all]
    if not fi then return nil end
    local ok, raw = pcall(function() return fi.range:raw() end)
    if ok and raw and #raw == 6 then return raw end
    return nil
end

local function mac_text(raw)
    if not raw then return "?" end
    return (hex_of(raw):gsub("(%x%x)(%x%x)(%x%x)(%x%x)(%x%x)(%x%x)", "%1:%2:%3:%4:%5:%6"))
end

-- The 6 bytes of a MAC written "aa:bb:cc:dd:ee:ff" (nil for a resolved name).
local function mac_from_text(text)
    local hex = tostring(text or ""):match("^(%x%x:%x%x:%x%x:%x%x:%x%x:%x%x)$")
    if not hex then return nil end
    return (hex:gsub("(%x%x):?", function(h) return string.char(tonumber(h, 16)) end))
end

-- The Ethernet addresses of this frame: keys for the per-capture state, and the raw
-- bytes when they can be had (the authentication tag covers them).
--
-- Keys come from pinfo.dl_src / pinfo.dl_dst, which the Ethernet dissector always sets:
-- field extractors (eth.src) return nothing while no protocol tree is built, as in the
-- first of tshark's two passes, and the state is written on the first pass. The raw
-- bytes come from the extractors when a tree is built (every pass that displays
-- anything), else from the address text when it is not a resolved name.
local function addresses(pinfo, macs)
    if macs then
        return mac_text(macs.src), mac_text(macs.dst), macs.src, macs.dst
    end
    local src_key, dst_key = tostring(pinfo.dl_src), tostring(pinfo.dl_dst)
    local src = mac_bytes(f_eth_src) or mac_from_text(src_key)
    local dst = mac_bytes(f_eth_dst) or mac_from_text(dst_key)
    return src_key, dst_key, src, dst
end

local function is_broadcast(key)
    return key == "ff:ff:ff:ff:ff:ff" or key == "Broadcast"
end

---------------------------------------------------------------------------------------
-- Messages (§4, §11)
---------------------------------------------------------------------------------------

-- Add `key=value` properties of `args` (starting at offset `off` of `tvb`); returns a
-- table lower-case key -> { value, offset, length } of the last occurrence and the list
-- of repeated keys.
local function add_properties(tree, tvb, off, args)
    local props, repeated = {}, {}
    local pos = 1
    if args == "" then return props, repeated end
    while pos <= #args + 1 do
        local stop = args:find(":", pos, true) or (#args + 1)
        local part = args:sub(pos, stop - 1)
        local item_off = off + pos - 1
        if part ~= "" then
            local ti = tree:add(f.property, tvb(item_off, #part), printable(part))
            local k, v = part:match("^([^=]+)=(.*)$")
            if k then
                ti:add(f.prop_key, tvb(item_off, #k), printable(k))
                if #v > 0 then
                    ti:add(f.prop_value, tvb(item_off + #k + 1, #v), printable(v))
                else
                    ti:add(f.prop_value, tvb(item_off + #k, 1), "")
                end
                local lk = k:lower()
                if props[lk] then repeated[#repeated + 1] = k end
                props[lk] = { value = v, offset = item_off + #k + 1, length = #v }
            else
                ti:add_proto_expert_info(e.malformed, "Property without '=': " .. printable(part, 40))
            end
        end
        pos = stop + 1
    end
    return props, repeated
end

local function prop_range(tvb, p)
    if p.length > 0 then return tvb(p.offset, p.length) end
    return tvb(p.offset - 1, 1)
end

-- SYN payloads (§4.2). Returns a short summary for the Info column.
local function dissect_syn(tree, tvb, off, text, required_keys)
    local sub = tree:add(hvncp, #text > 0 and tvb(off, #text) or tvb(0, HEADER_LEN), "SYN properties")
    local props, repeated = add_properties(sub, tvb, off, text)
    for _, k in ipairs(repeated) do
        sub:add_proto_expert_info(e.malformed, "Property '" .. printable(k) .. "' repeated: refused")
    end
    local role
    if props["vervmmlower"] or props["vervmmupper"] or props["ostype"] then
        role = "agent"
    elseif props["verhmrunning"] then
        role = "monitor"
    end
    sub:add(f.syn_role, role or "unknown"):set_generated()
    local function check(key, field, valid, why)
        local p = props[key]
        if not p then return end
        local ti = sub:add(field, prop_range(tvb, p), printable(p.value))
        if valid and not valid(p.value) then
            ti:add_proto_expert_info(e.malformed, why .. ": " .. printable(p.value, 40))
        end
    end
    check("uuid", f.syn_uuid, function(v) return v:match(UUID_PATTERN) ~= nil end,
        "uuid is not 8-4-4-4-12 hex digits")
    check("ostype", f.syn_ostype, function(v) return #v >= 1 and #v <= 32 and v:match("^[%w_%.%-]+$") end,
        "ostype is not 1-32 bytes of A-Z a-z 0-9 _ . -")
    check("vervmmlower", f.syn_vmm_lower, valid_version, "not MAJOR.MINOR")
    check("vervmmupper", f.syn_vmm_upper, valid_version, "not MAJOR.MINOR")
    check("verhmrunning", f.syn_hm_running, valid_version, "not MAJOR.MINOR")
    check("inc", f.syn_inc, function(v) return v:match("^%x+$") and #v <= 16 end,
        "inc is not 1-16 hex digits")
    local required = role == "monitor" and { "uuid", "verhmrunning" }
        or { "uuid", "ostype", "vervmmlower", "vervmmupper" }
    for _, k in ipairs(required) do
        if required_keys and not props[k] then
            sub:add_proto_expert_info(e.malformed, "Missing required property " .. k)
        end
    end
    local parts = {}
    if role then parts[#parts + 1] = role end
    if props.uuid then parts[#parts + 1] = "uuid=" .. printable(props.uuid.value, 36) end
    if props.ostype then parts[#parts + 1] = "ostype=" .. printable(props.ostype.value, 32) end
    if props.vervmmlower and props.vervmmupper then
        parts[#parts + 1] = "ver=" .. printable(props.vervmmlower.value, 8) .. "-"
            .. printable(props.vervmmupper.value, 8)
    end
    if props.verhmrunning then parts[#parts + 1] = "ver=" .. printable(props.verhmrunning.value, 8) end
    if props.inc then parts[#parts + 1] = "inc=" .. printable(props.inc.value, 16) end
    return table.concat(parts, " ")
end

-- Hello identifier (§4.3). Returns the Info summary.
local function dissect_hello(tree, tvb, off, text)
    local ti = #text > 0 and tree:add(f.hello_id, tvb(off, #text), printable(text))
        or tree:add(f.hello_id, tvb(0, HEADER_LEN), "")
    local s, n, p = text:match("^(%d+)%.(%d+)%.(%d+)$")
    local secs = parse_u64(s, 20)
    if not secs or #n ~= 9 or #p > 10 or tonumber(p) > 4294967295 then
        ti:add_proto_expert_info(e.malformed,
            "Hello identifier is not <secs>.<9-digit nanos>.<suffix>: a receiver drops it")
        return #text > 0 and "Hello " .. printable(text, 40) .. " (malformed)" or "Hello (malformed)"
    end
    ti:add(f.hello_secs, tvb(off, #s), secs)
    ti:add(f.hello_nanos, tvb(off + #s + 1, 9), tonumber(n))
    ti:add(f.hello_pid, tvb(off + #s + 11, #p), tonumber(p))
    if tonumber(s) < 2 ^ 53 then
        ti:add(f.hello_time, tvb(off, #text), NSTime.new(tonumber(s), tonumber(n))):set_generated()
    end
    return "Hello " .. text
end

-- Split `VERB[:ARGS]`; returns verb, args (nil without ':'), or nil on a bad verb.
local function split_verb(text)
    local colon = text:find(":", 1, true)
    local verb = colon and text:sub(1, colon - 1) or text
    local args = colon and text:sub(colon + 1) or nil
    if #verb < 1 or #verb > 32 or not verb:match("^[%w_]+$") then return nil end
    return verb, args
end

-- Application messages (§4.1, §11.1). Returns the Info summary.
local function dissect_message(tree, tvb, off, text)
    local verb, args = split_verb(text)
    if not verb then
        tree:add_proto_expert_info(e.malformed,
            "Payload is not VERB[:ARGS] with a verb of 1-32 bytes of A-Z a-z 0-9 _")
        return "Malformed message " .. printable(text, 40)
    end
    local mt = tree:add(hvncp, tvb(off, #text), "Message: " .. printable(text, 60))
    mt:add(f.verb, tvb(off, #verb), verb)
    local aoff = off + #verb + 1
    if args and #args > 0 then
        mt:add(f.args, tvb(aoff, #args), printable(args, 200))
    end
    args = args or ""
    local V = verb:upper()
    local function bad(why)
        mt:add_proto_expert_info(e.malformed, V .. ": " .. why .. " (a receiver refuses it)")
    end
    local function props_of()
        local props, repeated = add_properties(mt, tvb, aoff, args)
        for _, k in ipairs(repeated) do bad("property '" .. printable(k) .. "' repeated") end
        return props
    end

    if V == "START_HB" then
        local p = props_of().period_ms
        if p then
            local n = tonumber(p.value:match("^%d+$") and p.value or nil)
            if n and n <= 4294967295 then
                mt:add(f.start_hb_period, prop_range(tvb, p), n)
            end
            if not n or n < 100 or n > 3600000 then bad("period_ms must be 100-3600000") end
            return "START_HB period_ms=" .. printable(p.value, 12)
        end
        return "START_HB"
    elseif V == "STOP_HB" then
        props_of()
        return "STOP_HB"
    elseif V == "HB" then
        local p = props_of().seq
        if p then
            local v = parse_u64(p.value, 20)
            if v then mt:add(f.hb_seq, prop_range(tvb, p), v) else bad("seq is not a decimal below 2^64") end
            return "HB seq=" .. printable(p.value, 20)
        end
        return "HB"
    elseif V == "SHDN" then
        if #args < 1 or #args > 32 or not args:match("^[\32-\126]+$") then
            bad("reason must be 1-32 printable bytes")
        else
            mt:add(f.shdn_reason, tvb(aoff, #args), args)
        end
        return "SHDN " .. printable(args, 32)
    elseif V == "DBELL" then
        local hex = args:gsub("^0[xX]", "")
        local v = parse_hex_u64(hex)
        if not v then
            bad("vector must be 1-16 hex digits")
            return "DBELL " .. printable(args, 20)
        end
        mt:add(f.dbell_vector, tvb(aoff, #args), v)
        mt:add(f.dbell_report, (v:band(UInt64(2))):tonumber() ~= 0):set_generated()
        mt:add(f.dbell_critical, (v:band(UInt64(0x100))):tonumber() ~= 0):set_generated()
        return "DBELL 0x" .. v:tohex():gsub("^0+(%x)", "%1")
    elseif V == "PMSG_REQ" then
        if not args:match("^%x+$") or #args > 16 then
            bad("request id must be 1-16 hex digits")
        else
            mt:add(f.report_req, tvb(aoff, #args), args:lower())
        end
        return "PMSG_REQ req=" .. printable(args, 16)
    elseif V == "PMSG_RSP" then
        local req, gen, idx, cnt, rest =
            args:match("^(%x+):(%d+):(%d+)/(%d+):(.*)$")
        if not req or #req > 16 or #gen > 20 then
            bad("arguments are not <req>:<gen>:<index>/<count>:<chunk>")
            return "PMSG_RSP " .. printable(args, 40)
        end
        local o = aoff
        mt:add(f.report_req, tvb(o, #req), req:lower()); o = o + #req + 1
        local g = parse_u64(gen, 20)
        if g then mt:add(f.report_gen, tvb(o, #gen), g) else bad("generation above 2^64-1") end
        o = o + #gen + 1
        local i, n = tonumber(idx), tonumber(cnt)
        if i <= 255 then mt:add(f.report_index, tvb(o, #idx), i) end
        o = o + #idx + 1
        if n <= 255 then mt:add(f.report_count, tvb(o, #cnt), n) end
        o = o + #cnt + 1
        if n < 1 or n > 64 or i < 1 or i > n then bad("chunk index/count out of 1..count, count 1..64") end
        if #rest > 1024 then bad("chunk longer than 1024 bytes") end
        if #rest > 0 then
            local ct = mt:add(f.report_chunk, tvb(o, #rest), printable(rest, 80))
            local lo = o
            for line in (rest .. "\n"):gmatch("([^\n]*)\n") do
                if #line > 0 then ct:add(f.report_line, tvb(lo, #line), printable(line)) end
                lo = lo + #line + 1
            end
        else
            mt:add(f.report_chunk, tvb(o - 1, 1), "")
        end
        return string.format("PMSG_RSP req=%s gen=%s chunk %s/%s (%d bytes)",
            req:lower(), gen, idx, cnt, #rest)
    elseif V == "GMSG" or V == "CLRDB" then
        local req, gen = args:match("^(%x+):(%d+)$")
        if not req or #req > 16 or not parse_u64(gen, 20) then
            bad("arguments are not <req hex>:<gen>")
            return V .. " " .. printable(args, 40)
        end
        mt:add(f.report_req, tvb(aoff, #req), req:lower())
        mt:add(f.report_gen, tvb(aoff + #req + 1, #gen), parse_u64(gen, 20))
        return string.format("%s req=%s gen=%s", V, req:lower(), gen)
    end
    mt:add_proto_expert_info(e.unknown_verb, "Unknown verb " .. verb)
    if args:find("=", 1, true) then props_of() end
    return printable(text, 60)
end

---------------------------------------------------------------------------------------
-- The authentication trailer (§7)
---------------------------------------------------------------------------------------

local function dissect_trailer(tree, tvb, pinfo, payload_end, src, dst, ethertype)
    local avail = tvb:len() - payload_end
    if avail < TRAILER_LEN then
        tree:add_proto_expert_info(e.auth_truncated, string.format(
            "Rsv set but only %d of the trailer's %d bytes follow the payload", avail, TRAILER_LEN))
        return " [auth: trailer truncated]"
    end
    local t = tree:add(f.auth, tvb(payload_end, TRAILER_LEN))
    t:set_text("Authentication trailer")
    local key_id = tvb(payload_end, 1):uint()
    t:add(f.auth_key_id, tvb(payload_end, 1))
    t:add(f.auth_counter, tvb(payload_end + 1, 8))
    local tag_item = t:add(f.auth_tag, tvb(payload_end + 9, 16))
    local summary = string.format(" [auth key=%d]", key_id)
    if keys_error then
        t:add_proto_expert_info(e.bad_pref, "auth_keys preference: " .. keys_error)
    end
    local key = keys[key_id]
    if not key then
        t:add(f.auth_tag_status, 2):set_generated()
        tag_item:add_proto_expert_info(e.no_key, string.format(
            "Tag not verified: no key with id %d in the auth_keys preference", key_id))
        return summary
    end
    if not dst or not src then
        t:add(f.auth_tag_status, 2):set_generated()
        return summary
    end
    ethertype = ethertype or pinfo.match_uint
    if not ethertype or ethertype < 0x0600 then ethertype = registered_on or DEFAULT_ETHERTYPE end
    -- The tag covers the Ethernet header as sent (dst, src, EtherType), the HVNCP
    -- header, the payload, the key id and the counter.
    local covered = dst .. src .. string.char(math.floor(ethertype / 256) % 256, ethertype % 256)
        .. tvb:raw(0, payload_end + 9)
    local calc = hmac_sha256(key, covered):sub(1, 16)
    local ok = calc == tvb:raw(payload_end + 9, 16)
    t:add(f.auth_tag_calc, tvb(payload_end + 9, 16), calc):set_generated()
    t:add(f.auth_tag_status, ok and 1 or 0):set_generated()
    if not ok then
        tag_item:add_proto_expert_info(e.bad_tag, string.format(
            "Bad authentication tag: computed %s with key %d", hex_of(calc), key_id))
        return summary .. " [BAD TAG]"
    end
    return summary .. " [tag good]"
end

---------------------------------------------------------------------------------------
-- The dissector
---------------------------------------------------------------------------------------

-- Verbs only one side sends (docs/hvncp.md §4.1, §11.1).
local MONITOR_VERBS = { START_HB = true, STOP_HB = true, PMSG_REQ = true, GMSG = true }
local AGENT_VERBS = { HB = true, SHDN = true, DBELL = true, PMSG_RSP = true, CLRDB = true }

local function packet_kind(flags, frag_index)
    local ackr, ack, beg, fin, syn, hel =
        band(flags, 0x80) ~= 0, band(flags, 0x40) ~= 0, band(flags, 0x20) ~= 0,
        band(flags, 0x10) ~= 0, band(flags, 0x04) ~= 0, band(flags, 0x02) ~= 0
    if hel then return "Hello" end
    if ack then return syn and "SYN-ACK" or "ACK" end
    if syn then return ackr and "SYN" or "SYN refresh" end
    if not ackr then return "Datagram" end
    if beg and fin then return "Message" end
    return "Fragment"
end

local function dissect(tvb, pinfo, tree, macs)
    local total = tvb:len()
    pinfo.cols.protocol:set("HVNCP")
    local root = tree:add(hvncp, tvb(0, math.min(total, HEADER_LEN)))
    if total < HEADER_LEN then
        root:add_proto_expert_info(e.truncated, string.format(
            "Frame too short for the HVNCP header: %d of 8 bytes (a receiver drops it)", total))
        pinfo.cols.info:set(string.format("Truncated HVNCP header (%d bytes)", total))
        return total
    end

    local major, minor = tvb(0, 1):uint(), tvb(1, 1):uint()
    local number, flags = tvb(2, 1):uint(), tvb(3, 1):uint()
    local csum, frag_index, len = tvb(4, 1):uint(), tvb(5, 1):uint(), tvb(6, 2):uint()
    local kind = packet_kind(flags, frag_index)
    local is_ack, is_hello = band(flags, 0x40) ~= 0, band(flags, 0x02) ~= 0
    local ackr, beg, fin, pri, syn, rsv =
        band(flags, 0x80) ~= 0, band(flags, 0x20) ~= 0, band(flags, 0x10) ~= 0,
        band(flags, 0x08) ~= 0, band(flags, 0x04) ~= 0, band(flags, 0x01) ~= 0

    root:set_text(string.format("HVNCP %d.%d, %s, %s %d, Flags: %s, Len: %d", major, minor, kind,
        is_ack and "Ack" or "Seq", number, flags_string(flags), len))

    local vt = root:add(f.version, tvb(0, 2), string.format("%d.%d", major, minor))
    vt:add(f.ver_major, tvb(0, 1))
    vt:add(f.ver_minor, tvb(1, 1))
    root:add(f.number, tvb(2, 1))
    if is_ack then
        root:add(f.ack, tvb(2, 1)):set_generated()
    elseif not is_hello then
        root:add(f.seq, tvb(2, 1)):set_generated()
    end
    local ft = root:add(f.flags, tvb(3, 1))
    ft:append_text(" (" .. flags_string(flags) .. ")")
    ft:add(f.flag_ackr, tvb(3, 1))
    ft:add(f.flag_ack, tvb(3, 1))
    ft:add(f.flag_beg, tvb(3, 1))
    ft:add(f.flag_end, tvb(3, 1))
    ft:add(f.flag_pri, tvb(3, 1))
    ft:add(f.flag_syn, tvb(3, 1))
    ft:add(f.flag_hel, tvb(3, 1))
    ft:add(f.flag_rsv, tvb(3, 1))
    ft:add(f.flags_str, tvb(3, 1), flags_string(flags)):set_generated()
    local ct = root:add(f.checksum, tvb(4, 1))
    root:add(f.frag_index, tvb(5, 1))
    local lt = root:add(f.len, tvb(6, 2))
    root:add(f.kind, kind):set_generated()

    local suffix = ""
    local avail = total - HEADER_LEN
    if len > avail then
        lt:add_proto_expert_info(e.len_beyond, string.format(
            "Payload length %d runs past the %d bytes present (a receiver drops it)", len, avail))
        pinfo.cols.info:set(string.format("%s, len %d beyond the %d bytes present [Malformed]",
            kind, len, avail))
        return total
    end

    -- Checksum (§2.1): 8-bit wrapping sum of the header bytes but the checksum, and of
    -- the payload.
    local sum = 0
    local raw = tvb:raw(0, HEADER_LEN + len)
    for i = 1, #raw do
        if i ~= 5 then sum = sum + raw:byte(i) end
    end
    sum = sum % 256
    root:add(f.checksum_calc, tvb(4, 1), sum):set_generated()
    if sum == csum then
        root:add(f.checksum_status, tvb(4, 1), 1):set_generated()
        ct:append_text(" [correct]")
    else
        root:add(f.checksum_status, tvb(4, 1), 0):set_generated()
        ct:append_text(string.format(" [incorrect, should be 0x%02x]", sum))
        ct:add_proto_expert_info(e.bad_checksum, string.format(
            "Bad checksum 0x%02x, computed 0x%02x (a receiver drops it)", csum, sum))
        suffix = suffix .. " [BAD CHECKSUM]"
    end

    -- Header rules a receiver enforces (§2.2); Hellos are exempt.
    if not is_hello then
        if major ~= 2 then
            vt:add_proto_expert_info(e.bad_version, string.format(
                "Version %d.%d: the major must be 2 (a receiver drops it)", major, minor))
            suffix = suffix .. " [version " .. major .. "." .. minor .. "]"
        end
        local why
        if is_ack then
            if len ~= 0 then why = "an ACK has an empty payload" end
        elseif not syn and ackr then
            if beg and frag_index ~= 0 then
                why = "the first packet of a message has fragment index 0"
            elseif not beg and frag_index == 0 then
                why = "a continuation packet has a fragment index above 0"
            end
        end
        if why then
            ft:add_proto_expert_info(e.bad_flags, "Flag rule broken: " .. why .. " (a receiver drops it)")
            suffix = suffix .. " [bad flags]"
        end
    end

    -- Payload
    local text = tvb:raw(HEADER_LEN, len)
    local summary
    -- Addresses: from the Ethernet dissector, or given by the heuristic.
    local src_key, dst_key, src_mac, dst_mac = addresses(pinfo, macs)
    local key = src_key .. ">" .. dst_key
    if len > 0 then
        root:add(f.payload, tvb(HEADER_LEN, len))
        root:add(f.text, tvb(HEADER_LEN, len), printable(text, 300)):set_generated()
    end
    if is_hello then
        summary = dissect_hello(root, tvb, HEADER_LEN, text)
    elseif is_ack then
        summary = (syn and "SYN-ACK" or "ACK")
    elseif syn then
        -- A refresh (no ACKR) carries no properties a receiver reads (§3.2).
        local props = (ackr or len > 0) and dissect_syn(root, tvb, HEADER_LEN, text, ackr) or ""
        summary = (ackr and "SYN" or "SYN refresh") .. (props ~= "" and " " .. props or "")
    elseif not ackr or (beg and fin) then
        if len == 0 then
            root:add_proto_expert_info(e.malformed, "Empty message: no verb")
            summary = "Empty message"
        else
            summary = dissect_message(root, tvb, HEADER_LEN, text)
        end
    else
        -- A fragment of a message longer than one packet (§3.6): reassembled on the
        -- first pass, per direction and priority.
        local pkey = key .. "|" .. (pri and "U" or "N")
        if not pinfo.visited and sum == csum then
            local p = state.partial[pkey]
            if beg then
                p = { first = pinfo.number, frags = {}, frames = {} }
                state.partial[pkey] = p
            end
            if p and not p.frags[frag_index] then
                p.frags[frag_index] = text
                p.frames[#p.frames + 1] = pinfo.number
                state.fragment_first[pinfo.number] = p.first
                if fin then p.last = frag_index end
                if p.last then
                    local parts, complete = {}, true
                    for i = 0, p.last do
                        if not p.frags[i] then complete = false; break end
                        parts[#parts + 1] = p.frags[i]
                    end
                    if complete then
                        state.reassembled[pinfo.number] = { bytes = table.concat(parts), count = p.last + 1 }
                        for _, fr in ipairs(p.frames) do state.reassembled_in[fr] = pinfo.number end
                        state.partial[pkey] = nil
                    end
                end
            end
        end
        root:add(f.fragment, tvb(HEADER_LEN, len))
        if state.fragment_first[pinfo.number] then
            root:add(f.fragment_first, state.fragment_first[pinfo.number]):set_generated()
        end
        if state.reassembled_in[pinfo.number] then
            root:add(f.reassembled_in, state.reassembled_in[pinfo.number]):set_generated()
        end
        summary = string.format("Fragment %d%s%s", frag_index, beg and " (first)" or "",
            fin and " (last)" or "")
        local r = state.reassembled[pinfo.number]
        if r then
            local rtvb = ByteArray.new(hex_of(r.bytes)):tvb("Reassembled HVNCP message")
            local rt = root:add(hvncp, rtvb(), string.format(
                "Reassembled message: %d bytes in %d fragments", #r.bytes, r.count))
            rt:add(f.reassembled_count, r.count):set_generated()
            rt:add(f.reassembled_length, #r.bytes):set_generated()
            summary = summary .. ", reassembled: " .. dissect_message(rt, rtvb, 0, r.bytes)
        end
    end

    -- Who speaks: a Hello or a monitor's SYN or verb makes its sender a monitor, an
    -- agent's SYN or verb an agent (first pass; frames with a good checksum only).
    if not pinfo.visited then
        if sum == csum then
            local word = summary:match("^(%S+)") or ""
            local second = summary:match("^%S+ (%S+)") or ""
            local role
            if is_hello then
                role = "monitor"
            elseif syn and not is_ack and (second == "agent" or second == "monitor") then
                role = second
            elseif MONITOR_VERBS[word] then
                role = "monitor"
            elseif AGENT_VERBS[word] then
                role = "agent"
            end
            if role then state.roles[src_key] = role end
        end
        state.from[pinfo.number] = state.roles[src_key]
        state.to[pinfo.number] = is_broadcast(dst_key) and "broadcast" or state.roles[dst_key]
    end
    if state.from[pinfo.number] then
        root:add(f.from, state.from[pinfo.number]):set_generated()
    end
    if state.to[pinfo.number] then
        root:add(f.to, state.to[pinfo.number]):set_generated()
    end

    -- Acknowledgements and retransmissions (§3.4), on reliable packets and ACKs.
    if not is_hello then
        local kindtag = syn and "S" or "D"
        if is_ack then
            local sent_key = dst_key .. ">" .. src_key
                .. "|" .. kindtag .. "|" .. number
            local ack_key = key .. "|" .. kindtag .. "|" .. number
            if not pinfo.visited then
                local s = state.sent[sent_key]
                if s then state.ack_to[pinfo.number] = { frame = s.frame, time = s.time } end
                local a = state.acks[ack_key]
                if a and pinfo.abs_ts - a.time <= RETRANSMISSION_SPAN then
                    state.dup_ack[pinfo.number] = a.frame
                else
                    state.acks[ack_key] = { frame = pinfo.number, time = pinfo.abs_ts }
                end
            end
            local to = state.ack_to[pinfo.number]
            if to then
                root:add(f.ack_to, to.frame):set_generated()
                local dt = math.max(pinfo.abs_ts - to.time, 0)
                local secs = math.floor(dt)
                root:add(f.ack_rtt, NSTime.new(secs, math.floor((dt - secs) * 1e9))):set_generated()
            end
            if state.dup_ack[pinfo.number] then
                local ti = root:add(f.dup_ack_of, state.dup_ack[pinfo.number])
                ti:set_generated()
                ti:add_proto_expert_info(e.dup_ack, "Duplicate acknowledgement of number " .. number
                    .. " (the peer received the packet again)")
                suffix = suffix .. " [dup ACK]"
            end
        elseif ackr and sum == csum then
            local sent_key = key .. "|" .. kindtag .. "|" .. number
            local sig = flags .. "|" .. frag_index .. "|" .. csum .. "|" .. len
            if not pinfo.visited then
                local s = state.sent[sent_key]
                if s and s.sig == sig and pinfo.abs_ts - s.time <= RETRANSMISSION_SPAN then
                    state.retrans[pinfo.number] = s.frame
                else
                    state.sent[sent_key] = { frame = pinfo.number, time = pinfo.abs_ts, sig = sig }
                end
            end
            if state.retrans[pinfo.number] then
                local ti = root:add(f.retrans_of, state.retrans[pinfo.number])
                ti:set_generated()
                ti:add_proto_expert_info(e.retransmission, "Retransmission of frame "
                    .. state.retrans[pinfo.number] .. " (not acknowledged in time)")
                suffix = suffix .. " [retransmission]"
            end
        end
    end

    -- Trailer (§7) and padding.
    local after = HEADER_LEN + len
    if rsv then
        suffix = suffix .. dissect_trailer(root, tvb, pinfo, after, src_mac, dst_mac,
            macs and macs.ethertype)
        if total - after >= TRAILER_LEN then after = after + TRAILER_LEN end
    end
    if total > after then
        root:add(f.padding, tvb(after, total - after))
    end

    local where
    if is_hello then
        where = ""
    elseif is_ack then
        where = " ack=" .. number
    else
        where = " n=" .. number
    end
    pinfo.cols.info:set(summary .. where .. " [" .. flags_string(flags) .. "]" .. suffix)
    return total
end

function hvncp.dissector(tvb, pinfo, tree)
    local ok, err = pcall(dissect, tvb, pinfo, tree)
    if not ok then
        -- Never let a frame raise a Lua error: show it as an expert item instead.
        local ti = tree:add(hvncp, tvb())
        ti:add_proto_expert_info(e.internal, "Dissector error: " .. tostring(err))
        pinfo.cols.info:append(" [HVNCP dissector error]")
    end
    return tvb:len()
end

---------------------------------------------------------------------------------------
-- Registration
---------------------------------------------------------------------------------------

local ethertype_table = DissectorTable.get("ethertype")
local displaced -- the dissector that had our EtherType before (0x0600: XNS IDP)

-- The ethertype preference as a number: "0x88b5", "88b5h" or decimal; nil if invalid.
local function parse_ethertype(text)
    text = tostring(text or ""):match("^%s*(.-)%s*$")
    local v
    if text:match("^0[xX]%x+$") then
        v = tonumber(text:sub(3), 16)
    elseif text:match("^%d+$") then
        v = tonumber(text)
    end
    if v and v >= 0x0600 and v <= 0xffff then return v end
    return nil
end

local function register()
    local want = parse_ethertype(hvncp.prefs.ethertype)
    if not want then
        -- An EtherType below 0x0600 is an 802.3 length: keep the last valid value.
        want = registered_on or DEFAULT_ETHERTYPE
    end
    if registered_on == want then return end
    if registered_on then
        ethertype_table:remove(registered_on, hvncp)
        if displaced then ethertype_table:add(registered_on, displaced) end
    end
    displaced = ethertype_table:get_dissector(want)
    ethertype_table:add(want, hvncp)
    registered_on = want
end

local function apply_prefs()
    register()
    local parsed, err = parse_keys(hvncp.prefs.auth_keys)
    keys, keys_error = parsed or {}, err
end

hvncp.prefs_changed = apply_prefs

-- Heuristic (off unless the preference is set). Wireshark runs the "eth" heuristics on
-- the whole Ethernet frame before the EtherType table: a frame of another EtherType
-- whose bytes after the Ethernet header have version 2, a payload length that fits
-- and a checksum that matches is dissected as HVNCP.
local function heuristic(tvb, pinfo, tree)
    if not hvncp.prefs.heuristic or tvb:len() < 14 + HEADER_LEN then return false end
    local ethertype = tvb(12, 2):uint()
    if ethertype < 0x0600 or ethertype == registered_on then return false end
    if tvb(14, 1):uint() ~= 2 then return false end
    local len = tvb(20, 2):uint()
    if len > tvb:len() - 14 - HEADER_LEN then return false end
    local raw, sum = tvb:raw(14, HEADER_LEN + len), 0
    for i = 1, #raw do if i ~= 5 then sum = sum + raw:byte(i) end end
    if sum % 256 ~= tvb(18, 1):uint() then return false end
    local macs = { dst = tvb:raw(0, 6), src = tvb:raw(6, 6), ethertype = ethertype }
    local eth = tree:add(hvncp, tvb(0, 14), string.format(
        "Ethernet II, Src: %s, Dst: %s, Type: 0x%04x (HVNCP by heuristic)",
        mac_text(macs.src), mac_text(macs.dst), ethertype))
    eth:set_generated()
    local ok, err = pcall(dissect, tvb(14):tvb(), pinfo, tree, macs)
    if not ok then
        eth:add_proto_expert_info(e.internal, "Dissector error: " .. tostring(err))
    end
    return true
end

apply_prefs()
-- "Decode As… › Ethernet type › HVNCP" for any EtherType, besides the preference.
pcall(function() ethertype_table:add_for_decode_as(hvncp) end)
pcall(function() hvncp:register_heuristic("eth", heuristic) end)
