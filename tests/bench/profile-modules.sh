#!/usr/bin/env bash
# Where kernel module loading spends its time under QEMU TCG (why module loading dominates the boot path).
#
# Boots throwaway initramfs images (busybox + the 23 modules pi-init can load, in dependency
# order) on the tests' virtual board (QEMU virt, cortex-a57, 1 vCPU, 512 MB, TCG, Debian's
# arm64 kernel from .cache/). Every boot loads every module once, one insmod each. Per run:
#
#  untraced boots (no tracer; each insmod timed by the printk timestamps of /dev/kmsg marks
#  around it, so fork + exec of insmod + finit_module), one per variant of the .ko files:
#    shipped   the modules as Debian ships them (signed): the real figure
#    nosig     signature stripped (module_sig_check finds none, the kernel taints and goes on)
#    noevals   nosig + section _ftrace_eval_map renamed: the kernel finds no eval maps, so
#              trace_event_eval_update (print_fmt rewriting per TRACE_DEFINE_ENUM) is skipped
#    noevents  noevals + section _ftrace_events renamed: no trace events registered, no tracefs
#              files made for them
#    A rename changes one byte in the section-name string table and nothing else; the
#    differences between the variants are the costs of the signature check, the eval maps and
#    the events. The four boots are repeated once with -icount shift=0 (guest clock = 1 ns per
#    guest instruction): exact, repeatable instruction counts, whatever the host's load.
#    (The kernel/trace code doing that work is notrace, and kprobe events refuse notrace
#    functions on this kernel, so it cannot be timed from inside; hence the A/B.)
#  kprobe boot (shipped): kprobe + kretprobe events on load_module, module_sig_check,
#    blocking_notifier_call_chain_robust (the MODULE_STATE_COMING notifiers, where trace events
#    and eval maps are added) and do_init_module: a few breakpoint hits per module, so near
#    untraced, but traced.
#  graph boot (shipped): function_graph on load_module, max_graph_depth 2 (--depth): every
#    traceable direct child of load_module with its duration (static helpers are inlined, and
#    notrace callees such as ftrace_module_init show only through their traceable callees).
#    Every kernel function is hooked, so these figures are inflated; use them for shares.
#
# The guest prints its marks / trace on the serial console and powers off; the consoles are
# parsed here into Markdown tables (medians over the runs) on stdout. About 40 s per run plus
# 20 s for the icount boots on a 2-core machine.
#
#   tests/bench/profile-modules.sh [--runs 3] [--depth 2] [--timeout 300] [--keep <dir>]
#     --keep <dir>   keep the consoles and the initramfs images in <dir>
# Run as root after `bash tests/setup.sh` (it needs .cache/kernel and .cache/busybox).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PUREBOOT_CACHE:-$HERE/../../.cache}"
RUNS=3 DEPTH=2 TIMEOUT=300 KEEP=
usage() { echo "usage: $0 [--runs N] [--depth N] [--timeout S] [--keep DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="${2:-}"; shift 2 || usage ;;
    --depth) DEPTH="${2:-}"; shift 2 || usage ;;
    --timeout) TIMEOUT="${2:-}"; shift 2 || usage ;;
    --keep) KEEP="${2:-}"; shift 2 || usage ;;
    *) usage ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ && "$DEPTH" =~ ^[1-9]$ && "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || usage
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
KROOT="$CACHE/kernel/root"
KVER="$(cat "$CACHE/kernel/version" 2>/dev/null)" || { echo "no kernel in $CACHE: run tests/setup.sh" >&2; exit 1; }
KERNEL="$CACHE/kernel/vmlinuz"
BUSYBOX="$CACHE/busybox/busybox"
[ -x "$BUSYBOX" ] && [ -f "$KERNEL" ] || { echo "no arm64 busybox/kernel in $CACHE: run tests/setup.sh" >&2; exit 1; }
for c in qemu-system-aarch64 python3 cpio modinfo; do
  command -v "$c" >/dev/null || { echo "needs $c (tests/setup.sh installs it)" >&2; exit 1; }
done
T0=$(date +%s)

MODULES=(virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net
         dns_resolver sunrpc grace lockd netfs fscache nfs nfs_acl nfsv3 nfsv4 overlay
         loop crc32c_generic jbd2 mbcache crc16 ext4)
VARIANTS=(shipped nosig noevals noevents)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- the modules, each after what modules.dep says it needs -------------------------------
MODDIR="$KROOT/lib/modules/$KVER"
declare -A rel_of=() name_of=() seen=()
for m in "${MODULES[@]}"; do
  p="$(modinfo -b "$KROOT" -k "$KVER" -n "$m")" || { echo "module $m not in $KROOT ($KVER)" >&2; exit 1; }
  rel_of[$m]="${p#"$MODDIR/"}"; name_of[${p#"$MODDIR/"}]="$m"
done
mkdir -p "$work/ko"
: > "$work/modules"
for m in "${MODULES[@]}"; do
  r="${rel_of[$m]}"
  for d in $(awk -v r="$r:" '$1 == r { $1 = ""; print }' "$MODDIR/modules.dep"); do
    dn="${name_of[$d]:-}"
    [ -n "$dn" ] || { echo "$m needs $d, which is not in the list" >&2; exit 1; }
    [ -n "${seen[$dn]:-}" ] || { echo "$m needs $dn, which comes later in the list" >&2; exit 1; }
  done
  seen[$m]=1
  case "$r" in
    *.ko.xz) xz -dc "$MODDIR/$r" > "$work/ko/$m.ko" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$r" > "$work/ko/$m.ko" ;;
    *) cp "$MODDIR/$r" "$work/ko/$m.ko" ;;
  esac
  echo "$m /lib/modules/$m.ko" >> "$work/modules"
done

# --- the variants: strip the signature, hide sections by renaming them ---------------------
python3 - "$work" "${MODULES[@]}" <<'PY'
import os, struct, sys
work, mods = sys.argv[1], sys.argv[2:]
MAGIC = b"~Module signature appended~\n"

def unsigned(data):
    if not data.endswith(MAGIC):
        return data
    # struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len
    _, _, _, signer_len, key_id_len, _, sig_len = struct.unpack(">BBBBB3sI", data[-len(MAGIC) - 12:-len(MAGIC)])
    return data[:-(len(MAGIC) + 12 + sig_len + signer_len + key_id_len)]

def sections(data):
    """{name: size} of an ELF64 little-endian file's sections."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a little-endian ELF64 file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
    stroff, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    out = {}
    for i in range(shnum):
        name_off, = struct.unpack_from("<I", data, shoff + i * shentsize)
        size, = struct.unpack_from("<Q", data, shoff + i * shentsize + 0x20)
        at = stroff + name_off
        out[data[at:data.index(b"\0", at)].decode()] = size
    return out

with open(f"{work}/sections", "w") as out:   # eval maps and trace events each module carries
    for m in mods:
        sec = sections(open(f"{work}/ko/{m}.ko", "rb").read())
        out.write(f"{m} {sec.get('_ftrace_eval_map', 0) // 8} {sec.get('_ftrace_events', 0) // 8}\n")

def hide(data, names):
    """Rename the ELF sections in names (first character -> 'X'): the kernel looks them up by name."""
    b = bytearray(data)
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3a)
    stroff, = struct.unpack_from("<Q", b, shoff + shstrndx * shentsize + 0x18)
    found = set()
    for i in range(shnum):
        name_off, = struct.unpack_from("<I", b, shoff + i * shentsize)
        at = stroff + name_off
        name = bytes(b[at:b.index(b"\0", at)]).decode()
        if name in names:
            b[at] = ord("X")
            found.add(name)
    return bytes(b), found

for variant, names in (("nosig", ()), ("noevals", ("_ftrace_eval_map",)),
                       ("noevents", ("_ftrace_eval_map", "_ftrace_events"))):
    os.makedirs(f"{work}/ko-{variant}", exist_ok=True)
    for m in mods:
        data = unsigned(open(f"{work}/ko/{m}.ko", "rb").read())
        hidden, found = hide(data, set(names))
        assert found == set(names) & set(sections(data)), f"{m}: could not hide {set(names) - found}"
        open(f"{work}/ko-{variant}/{m}.ko", "wb").write(hidden)
PY
mv "$work/ko" "$work/ko-shipped"

# --- the guest's /init -------------------------------------------------------------------
cat > "$work/init" <<'INIT'
#!/bin/sh
# Guest side of tests/bench/profile-modules.sh: load every module once, timed as prof.mode says.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
MODE=plain DEPTH=2
for a in $(cat /proc/cmdline); do
  case "$a" in prof.mode=*) MODE="${a#*=}" ;; prof.depth=*) DEPTH="${a#*=}" ;; esac
done
T=/sys/kernel/tracing
say() { echo "PROF $*"; }
w() { echo "$2" > "$T/$1" || say "cannot write '$2' to $1"; }
say "mode $MODE $(cat /proc/version)"

if [ "$MODE" != plain ]; then
  mount -t tracefs tracefs "$T" || { say "no tracefs"; poweroff -f; }
  w tracing_on 0
  w buffer_size_kb 16384
fi
case "$MODE" in
graph)
  grep -qx load_module "$T/available_filter_functions" || say "load_module not traceable"
  w set_graph_function load_module
  w max_graph_depth "$DEPTH"
  w current_tracer function_graph
  w trace_options nofuncgraph-irqs
  w trace_options funcgraph-tail
  ;;
kprobe)
  for f in load_module module_sig_check blocking_notifier_call_chain_robust do_init_module; do
    if echo "p:prof/${f}__in $f" >> "$T/kprobe_events" && echo "r:prof/${f}__out $f" >> "$T/kprobe_events"; then
      say "probe $f"
    else
      say "probe-failed $f: $(tail -n 3 "$T/error_log" | tr '\n' ' ')"
    fi
  done
  w events/prof/enable 1
  ;;
esac

[ "$MODE" = plain ] || w tracing_on 1
while read -r name path; do
  if [ "$MODE" = plain ]; then
    echo "prof: start $name" > /dev/kmsg
    insmod "$path" || say "insmod $name failed"
    echo "prof: done $name" > /dev/kmsg
  else
    echo "mod $name" > "$T/trace_marker"
    insmod "$path" || say "insmod $name failed"
  fi
done < /modules

if [ "$MODE" = plain ]; then
  say "kmsg-begin"; dmesg | grep 'prof: '; say "kmsg-end"
  mount -t tracefs tracefs "$T"
else
  echo "mod end" > "$T/trace_marker"
  w tracing_on 0
  say "trace-begin"; cat "$T/trace"; say "trace-end"
fi
# What the variants did: trace events registered per system, signature taint.
# print fmt bytes per system: what trace_event_eval_update scans once per eval map (in the
# noevals variant they are as compiled; rewriting shortens them).
for s in sunrpc nfs nfs4 ext4; do
  say "events $s $(ls "$T/events/$s" 2>/dev/null | grep -vc '^enable$\|^filter$')"
  say "fmtbytes $s $(cat "$T/events/$s"/*/format 2>/dev/null | grep '^print fmt: ' | wc -c)"
done
say "tainted $(cat /proc/sys/kernel/tainted)"
say "finished"
poweroff -f
INIT

initrd() { # <variant> -> $work/initrd-<variant>.cpio.gz
  local v="$1" st="$work/stage-$1"
  mkdir -p "$st"/{bin,dev,proc,sys,tmp,lib/modules}
  cp "$BUSYBOX" "$st/bin/busybox"
  for a in sh mount insmod cat echo grep awk tr tail ls wc dmesg poweroff; do ln -s busybox "$st/bin/$a"; done
  mknod -m 0600 "$st/dev/console" c 5 1
  install -m 0755 "$work/init" "$st/init"
  cp "$work/modules" "$st/modules"
  cp "$work/ko-$v"/*.ko "$st/lib/modules/"
  (cd "$st" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6n > "$work/initrd-$v.cpio.gz"
  rm -rf "$st"
}
for v in "${VARIANTS[@]}"; do initrd "$v"; done
echo "profile-modules: kernel $KVER, ${#MODULES[@]} modules, $RUNS run(s) x 6 boots + 4 icount boots" >&2

boot() { # <variant> <mode> <console file> [extra qemu arguments]
  local rc=0 v="$1" mode="$2" console="$3"
  shift 3
  # quiet: the kernel's own messages would otherwise go to the serial console synchronously,
  # inside the timed insmods; the guest prints what it needs at the end.
  timeout -k 5 "$TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 1 -m 512 \
    -nographic -no-reboot -monitor none "$@" \
    -kernel "$KERNEL" -initrd "$work/initrd-$v.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 printk.devkmsg=on quiet prof.mode=$mode prof.depth=$DEPTH" \
    < /dev/null > "$console" 2>&1 || rc=$?
  if ! grep -q '^PROF finished' "$console" || grep -q '^PROF .*failed' "$console"; then
    echo "profile-modules: boot $v/$mode failed (exit $rc); console:" >&2
    tail -n 40 "$console" >&2
    return 1
  fi
}
for r in $(seq 1 "$RUNS"); do
  for vm in shipped:plain nosig:plain noevals:plain noevents:plain shipped:kprobe shipped:graph; do
    t=$(date +%s)
    boot "${vm%%:*}" "${vm#*:}" "$work/console.$r.${vm/:/.}"
    echo "profile-modules: run $r/$RUNS ${vm/:/ }: $(( $(date +%s) - t )) s" >&2
  done
done
# The same untraced boots once more with -icount shift=0: the guest clock then advances 1 ns per
# guest instruction, whatever the host's load, so these figures are exact and repeatable
# (1 ms = 1 million instructions); they count work, not TCG's cost of emulating it.
for v in "${VARIANTS[@]}"; do
  t=$(date +%s)
  boot "$v" plain "$work/console.ic.$v.plain" -icount shift=0,sleep=off
  echo "profile-modules: icount $v plain: $(( $(date +%s) - t )) s" >&2
done
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$work"/console.* "$work"/initrd-*.cpio.gz "$KEEP"/; fi

# --- the report ----------------------------------------------------------------------------
python3 - "$work" "$RUNS" "$DEPTH" "$KVER" "$(( $(date +%s) - T0 ))" <<'PY'
import re, statistics, sys
from collections import defaultdict
work, runs, depth, kver, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
VARIANTS = ["shipped", "nosig", "noevals", "noevents"]
SLOW = ["nfsv4", "sunrpc", "nfs", "ext4"]
SYSTEM = {"nfsv4": "nfs4", "nfs": "nfs", "sunrpc": "sunrpc", "ext4": "ext4"}

def lines(name):
    with open(f"{work}/console.{name}", errors="replace") as f:
        return [l.rstrip("\r\n") for l in f]

def section(ls, begin, end):
    i = ls.index(f"PROF {begin}")
    return ls[i + 1:ls.index(f"PROF {end}", i)]

def info(ls, key):
    """'PROF <key> <what...> <value>' lines -> {'<what...>': value}"""
    return {" ".join(l.split()[2:-1]): l.split()[-1] for l in ls if l.startswith(f"PROF {key} ")}

def insmod_ms(ls):
    """Untraced boot: {module: ms between the kmsg marks around its insmod}, in load order."""
    start, out = {}, {}
    for l in section(ls, "kmsg-begin", "kmsg-end"):
        m = re.match(r"\[\s*(\d+\.\d+)\] prof: (start|done) (\S+)", l)
        if m and m[2] == "start":
            start[m[3]] = float(m[1])
        elif m:
            out[m[3]] = (float(m[1]) - start[m[3]]) * 1000
    return out

def med(xs):
    return statistics.median(xs) if xs else 0.0

def f(x):
    return f"{x:.1f}" if abs(x) < 10 else f"{x:.0f}"

def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()

wall = {v: defaultdict(list) for v in VARIANTS}         # variant -> mod -> [ms per run]
kp = defaultdict(lambda: defaultdict(list))             # mod -> probe -> [ms per run]
gr = defaultdict(lambda: defaultdict(list))             # mod -> child -> [ms per run]
notes = []
order = list(insmod_ms(lines("1.shipped.plain")))
icount = {v: insmod_ms(lines(f"ic.{v}.plain")) for v in VARIANTS}
checks = {v: (info(lines(f"ic.{v}.plain"), "events"), info(lines(f"ic.{v}.plain"), "tainted")[""])
          for v in VARIANTS}
fmtbytes = {s: int(n) for s, n in info(lines("ic.noevals.plain"), "fmtbytes").items()}
carried = {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(f"{work}/sections")}

for run in range(1, runs + 1):
    for v in VARIANTS:
        for mod, ms in insmod_ms(lines(f"{run}.{v}.plain")).items():
            wall[v][mod].append(ms)

    # kprobe: pair entry and return events, per module (trace_marker lines name it)
    mod, opened, per = None, {}, defaultdict(lambda: defaultdict(float))
    for l in section(lines(f"{run}.shipped.kprobe"), "trace-begin", "trace-end"):
        m = re.search(r"\s(\d+\.\d+): (\w+): (.*)$", l)
        if not m:
            continue
        t, ev, rest = float(m[1]), m[2], m[3]
        if ev == "tracing_mark_write":
            mod = rest.split()[1] if rest.startswith("mod ") else mod
            continue
        pm = re.match(r"(\w+)__(in|out)$", ev)
        if not pm or mod in (None, "end"):
            continue
        if pm[2] == "in":
            opened[pm[1]] = t
        elif pm[1] in opened:
            per[mod][pm[1]] += (t - opened.pop(pm[1])) * 1000
    for mod, d in per.items():
        for k in ("load_module", "module_sig_check", "blocking_notifier_call_chain_robust", "do_init_module"):
            kp[mod][k].append(d.get(k, 0.0))

    # graph: durations of load_module's direct children, summed per name
    mod, stack, per = None, [], defaultdict(lambda: defaultdict(float))
    for l in section(lines(f"{run}.shipped.graph"), "trace-begin", "trace-end"):
        m = re.match(r"# entries-in-buffer/entries-written: (\d+)/(\d+)", l)
        if m and m[1] != m[2]:
            notes.append(f"run {run}: the function_graph buffer lost entries ({m[1]} of {m[2]} kept)")
        if "|" not in l or l.startswith("#"):
            continue
        left, right = l.split("|", 1)
        body = right.strip()
        mm = re.match(r"/\* mod (\S+) \*/$", body)
        if mm:
            mod, stack = mm[1], []
            continue
        if mod in (None, "end"):
            continue
        if re.match(r"[\w.]+\(\) \{$", body):
            stack.append(body[:body.index("(")])
            continue
        cm = re.match(r"\} /\* ([\w.]+) \*/$", body)
        lm = re.match(r"([\w.]+)\(\);$", body)
        if cm and stack:
            name = stack.pop()
        elif lm:
            name = lm[1]
        else:
            continue
        dm = re.search(r"(\d+(?:\.\d+)?) us", left)
        if not dm:
            continue
        ms = float(dm[1]) / 1000
        if name == "load_module" and not stack:
            per[mod]["load_module"] += ms
        elif stack == ["load_module"]:
            per[mod][name] += ms
    for mod, d in per.items():
        for k, v in d.items():
            gr[mod][k].append(v)

def ab_table(get, unit, note):
    """Rows: module, the four variants, the three differences, the trace-event share; plus totals."""
    rows, tot = [], defaultdict(float)
    for mod in order + ["**all**", "**" + "+".join(SLOW) + "**"]:
        if mod.startswith("**"):
            keep = order if mod == "**all**" else SLOW
            s, n, e, x = (sum(get(v, m) for m in keep) for v in VARIANTS)
        else:
            s, n, e, x = (get(v, mod) for v in VARIANTS)
        rows.append([mod, note(mod) if not mod.startswith("**") else f(s), f(n), f(e), f(x),
                     f(s - n), f(n - e), f(e - x), f"{(n - x) / s * 100:.0f}%" if s else "-"])
    table(["module", f"shipped {unit}", "nosig", "noevals", "noevents", "signature (shipped−nosig)",
           "eval maps (nosig−noevals)", "trace events (noevals−noevents)",
           "eval maps + events, share of shipped"], rows)

print(f"## Module loading profile: {kver}, QEMU virt TCG (cortex-a57, 1 vCPU, 512 MB)\n")
print("Module variants, each loaded in a boot of its own (all 23 modules, one insmod each, no tracer): "
      "shipped = as Debian ships them (signed); nosig = signature stripped; noevals = nosig with the "
      "`_ftrace_eval_map` section hidden (no eval maps, so no `trace_event_eval_update`); noevents = noevals "
      "with `_ftrace_events` hidden too (no trace events registered, no tracefs files). Differences "
      "between neighbouring variants are the costs of the signature check, the eval maps and the events.\n")
print(f"### 1a. Untraced, TCG wall clock: ms per insmod (kmsg marks: fork + exec + finit_module), median of {runs} run(s)\n")
ab_table(lambda v, m: med(wall[v][m]), "ms (min–max)",
         lambda m: f"{f(med(wall['shipped'][m]))} ({f(min(wall['shipped'][m]))}–{f(max(wall['shipped'][m]))})")
print("### 1b. Untraced, `-icount shift=0` (guest clock = 1 ns per instruction): million instructions per insmod, one boot per variant, exact\n")
ab_table(lambda v, m: icount[v][m], "M insns", lambda m: f(icount["shipped"][m]))
print("Checks (icount boots): trace events registered per system, and `/proc/sys/kernel/tainted`: " +
      "; ".join(f"{v}: " + ", ".join(f"{s} {c}" for s, c in ev.items()) + f", tainted {ta}"
                for v, (ev, ta) in checks.items()) + "\n")

print("Why eval maps cost this much: for every eval map of a module, `trace_event_eval_update` walks "
      "every trace event and, for each event of the map's system, scans its print format byte by "
      "byte (`update_event_printk`). The work grows as maps × the system's print-format bytes:\n")
rows = []
for mod in SLOW:
    maps, events = carried[mod]
    fmt = fmtbytes[SYSTEM[mod]]
    insns = (icount["nosig"][mod] - icount["noevals"][mod]) * 1e6
    ms = med(wall["nosig"][mod]) - med(wall["noevals"][mod])
    rows.append([mod, str(maps), str(events), f(fmt / 1024), f(maps * fmt / 2**20), f(ms), f(insns / 1e6),
                 f"{insns / (maps * fmt):.1f}" if maps * fmt else "-"])
table(["module", "eval maps", "trace events", f"print formats of its system, KiB", "maps × formats, MiB",
       "eval maps, ms (1a)", "eval maps, M insns (1b)", "insns per byte"], rows)

print(f"### 2. kprobe/kretprobe events, shipped modules, median of {runs} run(s), ms (traced, but only a few breakpoints per module)\n")
print("COMING notifiers = `blocking_notifier_call_chain_robust` (MODULE_STATE_COMING: trace events, eval maps, "
      "jump labels, BTF, ...); rest = load_module minus the three (ELF checks, layout, symbols, relocation, "
      "ftrace_module_init/enable, sysfs, ...). The notifiers' trace code is `notrace` and kprobe events "
      "refuse notrace functions on this kernel (`CONFIG_KPROBE_EVENTS_ON_NOTRACE` is off), hence the A/B above for the split inside.\n")
rows = []
for mod in order:
    k = kp[mod]
    lm, sig, ch, di = (med(k[x]) for x in ("load_module", "module_sig_check", "blocking_notifier_call_chain_robust", "do_init_module"))
    rows.append([mod, f(med(wall["shipped"][mod])), f(lm), f(sig), f(ch), f(di), f(lm - sig - ch - di),
                 f"{ch / lm * 100:.0f}%" if lm else "-"])
table(["module", "untraced insmod (1a)", "load_module", "module_sig_check", "COMING notifiers", "do_init_module",
       "rest", "notifiers / load_module"], rows)

print(f"### 3. function_graph on load_module, max_graph_depth {depth}, shipped modules, median of {runs} run(s), ms "
      "(TRACED: every kernel function is hooked, so slower than untraced; read it for shares)\n")
print("Static helpers (layout_and_allocate, simplify_symbols, apply_relocations, complete_formation, "
      "prepare_coming_module, ...) are inlined into load_module on this kernel, so their callees show "
      "as its children; `aarch64_insn_patch_text_nosync` is ftrace_module_init (notrace) turning the "
      "module's mcount sites into NOPs.\n")
totals = defaultdict(float)
for mod in order:
    for k, xs in gr[mod].items():
        if k != "load_module":
            totals[k] += med(xs)
cols = [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 5][:8]
rows = []
for mod in order:
    g = gr[mod]
    lm = med(g["load_module"])
    shown = [med(g[c]) if c in g else 0.0 for c in cols]
    others = sum(med(xs) for k, xs in g.items() if k != "load_module" and k not in cols)
    rows.append([mod, f(med(wall["shipped"][mod])), f(lm)] + [f(x) for x in shown] +
                [f(others), f(lm - sum(shown) - others)])
table(["module", "untraced insmod (1a)", "load_module (traced)"] + [f"`{c}`" for c in cols] +
      ["other children", "self (inlined + notrace)"], rows)
for n in notes:
    print(f"- {n}")
print(f"_(tests/bench/profile-modules.sh --runs {runs}: {secs} s)_")
PY
