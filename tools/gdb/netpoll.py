# gdb support for netpoll's tasks, as Go's runtime-gdb.py is for goroutines.
#
#   (gdb) source tools/gdb/netpoll.py
#   (gdb) info np-tasks            every live task: id, state, start function
#   (gdb) np-task 7 bt             task 7's backtrace (any gdb command works:
#                                  np-task 7 info frame, np-task 7 bt full)
#
# A task that is not running has its registers saved by the context switch
# (src/runtime/context.h). On a live process np-task points the selected
# thread's $pc/$sp/frame pointer at them for the length of the command, so
# gdb's own unwinder (and `bt full`, `info locals`) works, then puts them
# back. On a core file, where registers cannot be changed, `np-task N bt`
# walks the frame-pointer chain itself (the library is built with frame
# pointers) and prints symbol+offset for each frame.
#
# Needs the program's (or the library's) debug information or at least its
# symbols: it reads np__all_tasks (src/runtime/task.c, every task struct of
# the run), the task structs, and the scheduler's workers (the static `S`).
import time

import gdb

ON_PD_READ, ON_PD_WRITE, ON_WREC, ON_SLEEP, ON_FD_WREC, ON_FUNC = 1, 2, 3, 4, 5, 6
IDLE_MOVING, IDLE_MOVED = 2, 3


def _u64(addr):
    mem = gdb.selected_inferior().read_memory(addr, 8)
    return int.from_bytes(bytes(mem), "little")


def _ptr(v):
    return int(v.cast(gdb.lookup_type("unsigned long")))


def _arch():
    name = gdb.selected_inferior().architecture().name()
    return "aarch64" if "aarch64" in name else "x86-64"


def _tasks():
    t = gdb.parse_and_eval("np__all_tasks")
    while _ptr(t) != 0:
        yield t
        t = t["all_next"]


def _sched():
    """The scheduler's state: the global np__sched (or, in older builds,
    the static `S` of scheduler.c)."""
    try:
        return gdb.parse_and_eval("np__sched")
    except gdb.error:
        pass
    for sym in gdb.lookup_static_symbols("S"):
        v = sym.value()
        try:
            v["workers"], v["nworkers"]
            return v
        except gdb.error:
            continue
    return None


def _has_field(v, name):
    try:
        v[name]
        return True
    except gdb.error:
        return False


def _running():
    """task address -> worker id, for the tasks running now. Where threads
    and workers are separate (the hand-off), a thread that lost its worker
    runs its task on without one: worker id -1."""
    s = _sched()
    out = {}
    if s is None:
        return out
    if _has_field(s, "threads"):
        if _ptr(s["threads"]) == 0:
            return out
        for i in range(int(s["nthreads"])):
            th = s["threads"][i]
            cur = _ptr(th["current"])
            if cur:
                p = _ptr(th["p"])
                out[cur] = int(th["p"]["id"]) if p else -1
        return out
    if _ptr(s["workers"]) == 0:
        return out
    for i in range(int(s["nworkers"])):
        cur = _ptr(s["workers"][i]["current"])
        if cur:
            out[cur] = i
    return out


def _sym(addr, is_return=False):
    """symbol+0xoffset for addr (a return address is looked up one byte
    back, so that a call at a function's end names that function)."""
    if not addr:
        return "0x0"
    look = addr - 1 if is_return else addr
    try:
        # The outermost function block: the real function, not one inlined.
        block = gdb.current_progspace().block_for_pc(look)
        while block is not None and block.superblock is not None and \
                not block.superblock.is_static and not block.superblock.is_global:
            block = block.superblock
        if block is not None and block.function is not None:
            return "%s+0x%x" % (block.function.name, addr - block.start)
    except (gdb.error, RuntimeError, AttributeError):
        pass
    # No debug information: the minimal symbol. gdb prints C names with
    # a demangler's eyes unless told not to.
    text = gdb.execute("info symbol 0x%x" % look, to_string=True).strip()
    if text.startswith("No symbol"):
        return "0x%x" % addr
    name = text.split(" in section ")[0]
    off = 0
    if " + " in name:
        name, o = name.split(" + ")
        off = int(o)
    return "%s+0x%x" % (name, off + (addr - look))


def _still_parked(t, site, on, obj):
    me = _ptr(t["waiter"].address)
    try:
        if on == ON_PD_READ:
            return _ptr(obj.cast(gdb.lookup_type("np__pd").pointer())["rg"]) == me
        if on == ON_PD_WRITE:
            return _ptr(obj.cast(gdb.lookup_type("np__pd").pointer())["wg"]) == me
        if on in (ON_WREC, ON_FD_WREC):
            return int(t["wrec"]["claim"]) & 7 <= 1
        if on == ON_SLEEP:
            return _ptr(t["sleep_sem"]) == me
    except gdb.error:
        pass
    return True


def _wait_text(t, site):
    on = int(site["on"])
    obj = t["park_obj"]
    text = site["call"].string()
    what = site["what"].string()
    if on in (ON_PD_READ, ON_PD_WRITE) and _ptr(obj):
        fd = int(obj.cast(gdb.lookup_type("np__pd").pointer())["reg"]["fd"])
        text += " on %s fd %d" % (what, fd)
    elif on == ON_FD_WREC:
        text += " on fd %d" % _ptr(obj)
    elif on == ON_FUNC:
        text += " running " + _sym(_ptr(obj))
    elif _ptr(obj):
        text += " on %s 0x%x" % (what, _ptr(obj))
    elif what:
        text += " on " + what
    return on, text


def task_state(t, running):
    addr = _ptr(t)
    if addr in running:
        return "running on worker %d" % running[addr]
    site = t["park_site"]
    if _ptr(site):
        on, text = _wait_text(t, site)
        if _still_parked(t, site, on, t["park_obj"]):
            return "parked in " + text
        return "runnable (readied in %s)" % text
    if _ptr(t["stk"]) == 0:
        return "runnable (not started)"
    return "runnable"


def find_task(n):
    for t in _tasks():
        if int(t["id"]) == n:
            return t
    return None


class InfoNpTasks(gdb.Command):
    """List netpoll's live tasks: id, state, start function.
Usage: info np-tasks"""

    def __init__(self):
        super().__init__("info np-tasks", gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        running = _running()
        rows = []
        for t in _tasks():
            tid = int(t["id"])
            if tid > 0:
                rows.append((tid, task_state(t, running), _sym(_ptr(t["fn"]))))
        rows.sort()
        for tid, state, fn in rows:
            gdb.write("%6d  %-60s  %s\n" % (tid, state, fn))
        gdb.write("%d tasks\n" % len(rows))


def saved_regs(t):
    """(pc, sp, fp) a switch to t would resume with, or None."""
    ctx = t["ctx"]
    fields = [f.name for f in ctx.type.fields()]
    if "sp" in fields:
        sp = _ptr(ctx["sp"])
        if not sp:
            return None
        if _arch() == "aarch64":
            return _u64(sp + 88), sp + 176, _u64(sp + 80)
        return _u64(sp + 56), sp + 64, _u64(sp + 48)
    mc = ctx["uc"]["uc_mcontext"]
    if _arch() == "aarch64":
        return int(mc["pc"]), int(mc["sp"]), int(mc["regs"][29])
    g = mc["gregs"]  # REG_RIP 16, REG_RSP 15, REG_RBP 10
    return int(g[16]) & (2**64 - 1), int(g[15]) & (2**64 - 1), int(g[10]) & (2**64 - 1)


def fp_walk(pc, sp, fp, hi, limit=64):
    frames = [pc]
    while len(frames) < limit and sp <= fp <= hi - 16 and fp % 8 == 0:
        nfp, ret = _u64(fp), _u64(fp + 8)
        if not ret:
            break
        frames.append(ret)
        if nfp <= fp:
            break
        fp = nfp
    return frames


class NpTask(gdb.Command):
    """Run a gdb command in a parked or runnable netpoll task's context.
Usage: np-task ID COMMAND   e.g. np-task 7 bt"""

    def __init__(self):
        super().__init__("np-task", gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        words = arg.split(None, 1)
        if len(words) < 2 or not words[0].isdigit():
            raise gdb.GdbError("usage: np-task ID COMMAND (e.g. np-task 7 bt)")
        n, cmd = int(words[0]), words[1]
        t = find_task(n)
        if t is None:
            raise gdb.GdbError("no live task %d" % n)
        running = _running()
        if _ptr(t) in running:
            raise gdb.GdbError("task %d is running on worker %d: find its thread with "
                               "`info threads`" % (n, running[_ptr(t)]))
        if _ptr(t["stk"]) == 0:
            raise gdb.GdbError("task %d has not started: no stack yet" % n)
        idle = int(t["idle"]) & 3
        if idle in (IDLE_MOVING, IDLE_MOVED):
            raise gdb.GdbError("task %d's stack is moved out while idle (np_config."
                               "idle_stack_ns): np_dump can walk the copy" % n)
        regs = saved_regs(t)
        if regs is None:
            raise gdb.GdbError("task %d: saved registers unknown" % n)
        pc, sp, fp = regs
        gdb.write("task %d: %s\n" % (n, task_state(t, running)))
        if self._switch_and_run(pc, sp, fp, cmd):
            return
        if cmd.split()[0] not in ("bt", "backtrace", "where"):
            raise gdb.GdbError("registers cannot be changed here (a core file?): "
                               "only bt works, by a frame-pointer walk")
        hi = _ptr(t["stack"]["bottom"]) + int(t["stack"]["size"])
        for i, a in enumerate(fp_walk(pc, sp, fp, hi)):
            gdb.write("#%-2d 0x%016x in %s\n" % (i, a, _sym(a, is_return=True)))

    @staticmethod
    def _switch_and_run(pc, sp, fp, cmd):
        fpreg = "$x29" if _arch() == "aarch64" else "$rbp"
        frame = gdb.selected_frame()
        gdb.newest_frame().select()
        saved = [int(gdb.parse_and_eval(r).cast(gdb.lookup_type("unsigned long")))
                 for r in ("$pc", "$sp", fpreg)]
        try:
            gdb.execute("set $sp = 0x%x" % sp)
        except gdb.error:
            frame.select()
            return False
        try:
            gdb.execute("set %s = 0x%x" % (fpreg, fp))
            gdb.execute("set $pc = 0x%x" % pc)
            gdb.execute(cmd)
        finally:
            gdb.execute("set $pc = 0x%x" % saved[0])
            gdb.execute("set $sp = 0x%x" % saved[1])
            gdb.execute("set %s = 0x%x" % (fpreg, saved[2]))
            try:
                frame.select()
            except gdb.error:
                gdb.newest_frame().select()
        return True


InfoNpTasks()
NpTask()
