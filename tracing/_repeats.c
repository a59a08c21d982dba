/* Lines that repeat a call already annotated, written from kept pieces.
 *
 * A server under load prints the same call line after line, differing only
 * in its time and duration. Once the annotator (Python, the one
 * implementation) has written a line's JSON record, and the verdict it gave
 * may be reused (tracing.changes), tracing.repeats hands this core the line
 * and that record as a template. A later line with the same text but its
 * time and duration, while the model's change count is the same, gets the
 * template with its own line number, time and duration filled in. Anything
 * else is a miss, handed back to Python. The core knows nothing of calls,
 * notes or the JSON schema: only how strace prefixes a line (pid, time) and
 * ends it (-T duration), and how Python writes an int and a float.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CAPACITY 8192  /* table slots, a power of two */
#define KEEP 4096      /* entries kept before the table is emptied (as annotate.REUSE_KEEP) */
#define THREADS 64     /* threads whose last hit is kept; more, and lines miss */
#define FLUSH (256 * 1024)  /* output bytes kept before they are written */
#define NUMBER 64      /* a time or duration this long is not one the core reads */

/* Where a line's per-line parts are: a split of the bytes, no copies. */
typedef struct {
    long tid;
    int has_tid;
    Py_ssize_t ts_at, ts_end;    /* the -ttt/-r time token, or an empty range */
    Py_ssize_t dur_at, dur_end;  /* the -T duration's digits, or an empty range */
    Py_ssize_t body_end;         /* where the text before " <duration>" ends */
} Split;

typedef struct {
    uint64_t hash;
    char *key;  /* text before the time, then the text between time and duration */
    Py_ssize_t keylen, head;  /* head: the length of the first part */
    int flags;  /* 1: has a time, 2: has a duration */
    long long made;  /* the change count the verdict stands for */
    char *tmpl;  /* the JSON line, UTF-8, with \0L \0S \0D where line, time, duration go */
    Py_ssize_t tmpllen;
    PyObject *syscall, *category;  /* for the Summary's counts */
    long hits;
    int loop;  /* a loop thread's call: the stall check applies */
} Entry;

typedef struct {
    long tid;
    int has_tid;
    PyObject *item;  /* (line number, text) of the thread's last hit */
    double ts;
    int has_ts;
} Last;

typedef struct {
    PyObject_HEAD
    PyObject *made;  /* tracing.changes.made: [count] */
    PyObject *last;  /* model.last: tid -> the thread's last event */
    PyObject *tallies;  /* (syscall, category) -> hits, of entries since let go */
    double stall;
    Entry *slots[CAPACITY];
    Py_ssize_t count;
    Last threads[THREADS];
    int nthreads;
    char *out;
    Py_ssize_t outlen, outcap;
    long hits;
} Core;

static PyObject *TS_NAME, *RESUMED_NAME;

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static Py_ssize_t digits(const char *s, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && is_digit(s[i])) i++;
    return i;
}

/* The prefixes as parse._FAST reads them: `[pid N] ` or `N +`, spaces, `T.F +`,
 * then a call's name; and a ` <D.F>` at the end. 0 if the line is not of that
 * shape (Python reads it). */
static int split_line(const char *s, Py_ssize_t n, Split *p) {
    Py_ssize_t i = 0, j;
    memset(p, 0, sizeof(*p));
    if (n > 5 && memcmp(s, "[pid ", 5) == 0) {
        i = 5;
        while (i < n && s[i] == ' ') i++;
        j = digits(s, i, n);
        if (j == i || j - i > 10 || j + 1 >= n || s[j] != ']' || s[j + 1] != ' ') return 0;
        p->tid = strtol(s + i, NULL, 10), p->has_tid = 1;
        i = j + 2;
    } else if (n > 0 && s[0] == '[') {
        return 0;
    } else {
        j = digits(s, 0, n);
        if (j > 0 && j <= 10 && j < n && s[j] == ' ') {
            p->tid = strtol(s, NULL, 10), p->has_tid = 1;
            i = j;
        }
    }
    while (i < n && s[i] == ' ') i++;
    p->ts_at = p->ts_end = i;
    j = digits(s, i, n);
    if (j > i) {
        Py_ssize_t k = j < n && s[j] == '.' ? digits(s, j + 1, n) : j;
        if (j - i > 12 || k == j + 1 || k == j || k >= n || s[k] != ' ' || k - i >= NUMBER) return 0;
        p->ts_end = k;
        for (i = k; i < n && s[i] == ' '; i++) ;
    }
    if (i >= n || !((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_')) return 0;
    p->body_end = p->dur_at = p->dur_end = n;
    if (n > 0 && s[n - 1] == '>') {  /* " <D.F>": digits, a dot, 1 to 12 digits, "<", " " */
        Py_ssize_t k = n - 1;
        while (k > i && is_digit(s[k - 1])) k--;
        if (k < n - 1 && k > i && s[k - 1] == '.') {
            Py_ssize_t dot = k - 1;
            k = dot;
            while (k > i && is_digit(s[k - 1])) k--;
            if (k < dot && dot - k <= 12 && k - 2 > i && s[k - 1] == '<' && s[k - 2] == ' ' && n - 1 - k < NUMBER)
                p->dur_at = k, p->dur_end = n - 1, p->body_end = k - 2;
        }
    }
    return 1;
}

static int flags_of(const Split *p) {
    return (p->ts_end > p->ts_at ? 1 : 0) | (p->dur_end > p->dur_at ? 2 : 0);
}

static uint64_t hash_bytes(uint64_t h, const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static uint64_t hash_line(const char *s, const Split *p) {
    uint64_t h = 14695981039346656037ULL ^ (uint64_t)flags_of(p) ^ ((uint64_t)p->ts_at << 8);
    h = hash_bytes(h, s, p->ts_at);
    return hash_bytes(h, s + p->ts_end, p->body_end - p->ts_end);
}

static Entry *find(Core *c, const char *s, const Split *p, uint64_t h, Py_ssize_t *slot) {
    Py_ssize_t tail = p->body_end - p->ts_end, i = (Py_ssize_t)(h & (CAPACITY - 1));
    for (;; i = (i + 1) & (CAPACITY - 1)) {
        Entry *e = c->slots[i];
        if (e == NULL) {
            if (slot) *slot = i;
            return NULL;
        }
        if (e->hash == h && e->head == p->ts_at && e->keylen == p->ts_at + tail && e->flags == flags_of(p)
            && memcmp(e->key, s, p->ts_at) == 0 && memcmp(e->key + p->ts_at, s + p->ts_end, tail) == 0)
            return e;
    }
}

/* A time or duration token (split_line keeps them under NUMBER) as a double. */
static int number(const char *s, Py_ssize_t at, Py_ssize_t end, double *v) {
    char buf[NUMBER];
    if (end - at >= NUMBER) {
        PyErr_SetString(PyExc_ValueError, "a number longer than split_line allows");
        return 0;
    }
    memcpy(buf, s + at, end - at);
    buf[end - at] = '\0';
    *v = PyOS_string_to_double(buf, NULL, NULL);
    return !(*v == -1.0 && PyErr_Occurred());
}

static long long made_now(Core *c) {
    return PyLong_AsLongLong(PyList_GET_ITEM(c->made, 0));
}

/* -------------------------------------------------------------- output */

static int reserve(Core *c, Py_ssize_t more) {
    if (c->outlen + more <= c->outcap) return 1;
    Py_ssize_t cap = c->outcap ? c->outcap : 65536;
    while (cap < c->outlen + more) cap *= 2;
    char *got = PyMem_Realloc(c->out, cap);
    if (got == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    c->out = got, c->outcap = cap;
    return 1;
}

static int put(Core *c, const char *s, Py_ssize_t n) {
    if (!reserve(c, n)) return 0;
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
    return 1;
}

/* repr() of a float, as Python writes it. */
static int put_float(Core *c, double v) {
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return 0;
    int ok = put(c, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return ok;
}

/* The template with this line's number, time and duration put in. */
static int fill(Core *c, const Entry *e, long lineno, double ts, double dur) {
    const char *t = e->tmpl, *end = e->tmpl + e->tmpllen;
    while (t < end) {
        const char *mark = memchr(t, '\0', end - t);
        if (mark == NULL || mark + 1 >= end) return put(c, t, end - t);
        if (!put(c, t, mark - t)) return 0;
        char num[32];
        switch (mark[1]) {
        case 'L':
            if (!put(c, num, snprintf(num, sizeof(num), "%ld", lineno))) return 0;
            break;
        case 'S':
            if (!put_float(c, ts)) return 0;
            break;
        default:
            if (!put_float(c, dur)) return 0;
        }
        t = mark + 2;
    }
    return 1;
}

/* ------------------------------------------------------ threads' last calls */

static Last *last_of(Core *c, const Split *p) {
    for (int i = 0; i < c->nthreads; i++)
        if (c->threads[i].has_tid == p->has_tid && c->threads[i].tid == p->tid) return &c->threads[i];
    return NULL;
}

/* Whether the stall check (annotate.Annotator.feed) would add to this loop
 * thread's note: the call before began STALL or more before it, or had a
 * `resumed>` line. 1 yes, 0 no, -1 an error. */
static int may_stall(Core *c, const Split *p, double ts) {
    Last *mine = last_of(c, p);
    if (mine != NULL) return mine->has_ts && ts - mine->ts >= c->stall;
    PyObject *tid = p->has_tid ? PyLong_FromLong(p->tid) : Py_NewRef(Py_None);
    if (tid == NULL) return -1;
    PyObject *prev = PyDict_GetItemWithError(c->last, tid);  /* borrowed */
    Py_DECREF(tid);
    if (prev == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *pts = PyObject_GetAttr(prev, TS_NAME);
    if (pts == NULL) return -1;
    int stall = 0;
    if (pts != Py_None) {
        double was = PyFloat_AsDouble(pts);
        PyObject *resumed = PyObject_GetAttr(prev, RESUMED_NAME);
        if ((was == -1.0 && PyErr_Occurred()) || resumed == NULL) {
            Py_DECREF(pts);
            Py_XDECREF(resumed);
            return -1;
        }
        stall = ts - was >= c->stall || resumed != Py_None;
        Py_DECREF(resumed);
    }
    Py_DECREF(pts);
    return stall;
}

static int note_last(Core *c, const Split *p, PyObject *item, double ts) {
    Last *mine = last_of(c, p);
    if (mine == NULL) {
        if (c->nthreads == THREADS) return 0;
        mine = &c->threads[c->nthreads++];
        mine->tid = p->tid, mine->has_tid = p->has_tid, mine->item = NULL;
    }
    Py_XSETREF(mine->item, Py_NewRef(item));
    mine->ts = ts, mine->has_ts = p->ts_end > p->ts_at;
    return 1;
}

/* A Core made with __new__ alone has no count to compare with. */
static int ready(Core *c) {
    if (c->made != NULL && c->last != NULL && c->tallies != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "Core() was not initialised");
    return 0;
}

/* ------------------------------------------------------------- one line */

typedef struct {
    const char *s;
    Py_ssize_t n;
    long lineno;
    Split p;
    Entry *e;
    double ts, dur;
} Line;

/* The entry a line repeats, if it stands: 1 found, 0 a miss, -1 an error. */
static int look_up(Core *c, PyObject *item, Line *l) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) return 0;
    PyObject *num = PyTuple_GET_ITEM(item, 0), *raw = PyTuple_GET_ITEM(item, 1);
    if (!PyLong_CheckExact(num) || !PyUnicode_CheckExact(raw) || !PyUnicode_IS_ASCII(raw)) return 0;
    l->lineno = PyLong_AsLong(num);
    if (l->lineno == -1 && PyErr_Occurred()) return -1;
    l->s = (const char *)PyUnicode_DATA(raw);
    l->n = PyUnicode_GET_LENGTH(raw);
    while (l->n > 0 && l->s[l->n - 1] == '\n') l->n--;  /* as numbered_events' rstrip("\n") */
    if (!split_line(l->s, l->n, &l->p)) return 0;
    l->e = find(c, l->s, &l->p, hash_line(l->s, &l->p), NULL);
    if (l->e == NULL) return 0;
    long long now = made_now(c);
    if (now == -1 && PyErr_Occurred()) return -1;
    if (l->e->made != now) return 0;
    l->ts = l->dur = 0.0;
    if (l->p.ts_end > l->p.ts_at && !number(l->s, l->p.ts_at, l->p.ts_end, &l->ts)) return -1;
    if (l->p.dur_end > l->p.dur_at && !number(l->s, l->p.dur_at, l->p.dur_end, &l->dur)) return -1;
    if (l->e->loop && l->p.ts_end > l->p.ts_at) {
        int stall = may_stall(c, &l->p, l->ts);
        if (stall != 0) return stall < 0 ? -1 : 0;
    }
    return 1;
}

/* until_miss(items): write the lines that repeat, until one does not.
 * Returns that item, None at the end, or True when output is waiting (write_to). */
static PyObject *until_miss(Core *c, PyObject *items) {
    PyObject *item;
    if (!ready(c)) return NULL;
    while ((item = PyIter_Next(items)) != NULL) {
        Line l;
        int got = look_up(c, item, &l);
        if (got == 1 && !note_last(c, &l.p, item, l.ts)) got = 0;
        if (got <= 0) {
            if (got < 0) Py_CLEAR(item);
            return item;
        }
        Py_DECREF(item);
        Py_ssize_t mark = c->outlen;
        if (!fill(c, l.e, l.lineno, l.ts, l.dur) || !put(c, "\n", 1)) {
            c->outlen = mark;  /* no half line */
            return NULL;
        }
        l.e->hits++, c->hits++;
        if (c->outlen >= FLUSH) Py_RETURN_TRUE;
    }
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* add(line): a line the annotator wrote, after the repeats before it.
 * True when output is waiting. */
static PyObject *add(Core *c, PyObject *line) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(line, &n);
    if (s == NULL || !put(c, s, n) || !put(c, "\n", 1)) return NULL;
    return PyBool_FromLong(c->outlen >= FLUSH);
}

/* write_to(stream): hand the output so far to a binary stream's write(). */
static PyObject *write_to(Core *c, PyObject *stream) {
    Py_ssize_t at = 0;
    while (at < c->outlen) {
        PyObject *view = PyMemoryView_FromMemory(c->out + at, c->outlen - at, PyBUF_READ);
        if (view == NULL) return NULL;
        PyObject *wrote = PyObject_CallMethod(stream, "write", "O", view);
        PyObject *type, *value, *trace;
        PyErr_Fetch(&type, &value, &trace);  /* write's error, kept while the view is let go */
        PyObject *gone = PyObject_CallMethod(view, "release", NULL);  /* the stream may not keep it */
        Py_DECREF(view);
        if (gone == NULL) {  /* it did keep it: this memory is reused, so that is an error */
            Py_XDECREF(wrote);
            Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(trace);
            return NULL;
        }
        Py_DECREF(gone);
        PyErr_Restore(type, value, trace);
        Py_ssize_t n = wrote == NULL || wrote == Py_None ? 0 : PyLong_AsSsize_t(wrote);
        Py_XDECREF(wrote);
        if (n <= 0 || PyErr_Occurred()) {  /* keep what was not written; None: a non-blocking stream */
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_BlockingIOError, "the output took nothing");
            memmove(c->out, c->out + at, c->outlen - at);
            c->outlen -= at;
            return NULL;
        }
        at += n;
    }
    c->outlen = 0;
    Py_RETURN_NONE;
}

/* predict(item): the JSON line a repeat would get, or None; changes nothing
 * (annotate's check mode compares it with the annotator's own). */
static PyObject *predict(Core *c, PyObject *item) {
    Line l;
    if (!ready(c)) return NULL;
    int got = look_up(c, item, &l);
    if (got <= 0) return got < 0 ? NULL : Py_NewRef(Py_None);
    Py_ssize_t mark = c->outlen;
    if (!fill(c, l.e, l.lineno, l.ts, l.dur)) {
        c->outlen = mark;
        return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8(c->out + mark, c->outlen - mark, "strict");
    c->outlen = mark;
    return text;
}

static PyObject *take_last(Core *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *got = PyList_New(0);
    if (got == NULL) return NULL;
    for (int i = 0; i < c->nthreads; i++) {
        Last *t = &c->threads[i];
        PyObject *pair = t->has_tid ? Py_BuildValue("(lO)", t->tid, t->item) : Py_BuildValue("(OO)", Py_None, t->item);
        if (pair == NULL || PyList_Append(got, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(got);
            return NULL;
        }
        Py_DECREF(pair);
    }
    for (int i = 0; i < c->nthreads; i++) Py_CLEAR(c->threads[i].item);
    c->nthreads = 0;
    return got;
}

/* ------------------------------------------------------------- entries */

static int tally(Core *c, Entry *e) {
    if (e->hits == 0) return 0;
    PyObject *key = PyTuple_Pack(2, e->syscall, e->category);
    if (key == NULL) return -1;
    PyObject *had = PyDict_GetItemWithError(c->tallies, key);  /* borrowed */
    PyObject *more = PyLong_FromLong(e->hits);
    PyObject *sum = had && more ? PyNumber_Add(had, more) : Py_XNewRef(more);
    int rc = sum == NULL || PyErr_Occurred() ? -1 : PyDict_SetItem(c->tallies, key, sum);
    Py_XDECREF(more);
    Py_XDECREF(sum);
    Py_DECREF(key);
    e->hits = 0;
    return rc;
}

/* An entry's template and what it stands for; 0 out of memory (the entry unchanged). */
static int set_template(Entry *e, const char *t, Py_ssize_t tlen, long long made, int loop, PyObject *syscall,
                        PyObject *category) {
    char *copy = PyMem_Malloc(tlen + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    memcpy(copy, t, tlen);
    PyMem_Free(e->tmpl);
    e->tmpl = copy, e->tmpllen = tlen, e->made = made, e->loop = loop;
    Py_XSETREF(e->syscall, Py_NewRef(syscall));
    Py_XSETREF(e->category, Py_NewRef(category));
    return 1;
}

static void free_entry(Entry *e) {
    Py_XDECREF(e->syscall);
    Py_XDECREF(e->category);
    PyMem_Free(e->key);
    PyMem_Free(e->tmpl);
    PyMem_Free(e);
}

static int let_go(Core *c) {
    int rc = 0;
    for (Py_ssize_t i = 0; i < CAPACITY; i++) {
        if (c->slots[i] == NULL) continue;
        if (tally(c, c->slots[i]) < 0) rc = -1;
        free_entry(c->slots[i]);
        c->slots[i] = NULL;
    }
    c->count = 0;
    return rc;
}

/* remember(text, made, template, syscall, category, loop, tid, ts, duration):
 * keep a line's record as the template for its repeats. False when the line's
 * own split does not give the record's tid, time and duration. */
static PyObject *remember(Core *c, PyObject *args) {
    PyObject *text, *tmpl, *syscall, *category, *tid, *ts, *dur;
    long long made;
    int loop;
    if (!ready(c) || !PyArg_ParseTuple(args, "ULUUUpOOO", &text, &made, &tmpl, &syscall, &category, &loop,
                                       &tid, &ts, &dur))
        return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_FALSE;
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), tlen;
    Split p;
    double v;
    if (!split_line(s, n, &p) || (tid == Py_None) == p.has_tid
        || (ts == Py_None) == (p.ts_end > p.ts_at) || (dur == Py_None) == (p.dur_end > p.dur_at))
        Py_RETURN_FALSE;
    if (p.has_tid && PyLong_AsLong(tid) != p.tid)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_False);
    if (ts != Py_None && (!number(s, p.ts_at, p.ts_end, &v) || v != PyFloat_AsDouble(ts)))
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_False);
    if (dur != Py_None && (!number(s, p.dur_at, p.dur_end, &v) || v != PyFloat_AsDouble(dur)))
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_False);
    const char *t = PyUnicode_AsUTF8AndSize(tmpl, &tlen);
    if (t == NULL) return NULL;
    uint64_t h = hash_line(s, &p);
    Py_ssize_t slot;
    Entry *e = find(c, s, &p, h, &slot);
    if (e != NULL) {  /* the count moved on since it was kept: it stands for the new count */
        if (tally(c, e) < 0 || !set_template(e, t, tlen, made, loop, syscall, category)) return NULL;
        Py_RETURN_TRUE;
    }
    if (c->count >= KEEP) {
        if (let_go(c) < 0) return NULL;
        find(c, s, &p, h, &slot);
    }
    Py_ssize_t tail = p.body_end - p.ts_end;
    e = PyMem_Calloc(1, sizeof(Entry));
    if (e == NULL) return PyErr_NoMemory();
    e->key = PyMem_Malloc(p.ts_at + tail + 1);
    if (e->key == NULL || !set_template(e, t, tlen, made, loop, syscall, category)) {
        if (e->key == NULL) PyErr_NoMemory();
        free_entry(e);
        return NULL;
    }
    memcpy(e->key, s, p.ts_at);
    memcpy(e->key + p.ts_at, s + p.ts_end, tail);
    e->hash = h, e->keylen = p.ts_at + tail, e->head = p.ts_at, e->flags = flags_of(&p);
    c->slots[slot] = e;
    c->count++;
    Py_RETURN_TRUE;
}

/* counts(): {(syscall, category): lines written as repeats}, for the Summary. */
static PyObject *counts(Core *c, PyObject *Py_UNUSED(ignored)) {
    if (!ready(c)) return NULL;
    for (Py_ssize_t i = 0; i < CAPACITY; i++)
        if (c->slots[i] != NULL && tally(c, c->slots[i]) < 0) return NULL;
    return PyDict_Copy(c->tallies);
}

/* ------------------------------------------------------------ the type */

static int core_init(Core *c, PyObject *args, PyObject *kwds) {
    static char *names[] = {"made", "last", "stall", NULL};
    PyObject *made, *last;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!d", names, &PyList_Type, &made, &PyDict_Type, &last,
                                     &c->stall))
        return -1;
    if (PyList_GET_SIZE(made) != 1) {
        PyErr_SetString(PyExc_ValueError, "made: a list of one count");
        return -1;
    }
    Py_XSETREF(c->made, Py_NewRef(made));
    Py_XSETREF(c->last, Py_NewRef(last));
    if (c->tallies == NULL && (c->tallies = PyDict_New()) == NULL) return -1;
    return 0;
}

static int core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->made);
    Py_VISIT(c->last);
    Py_VISIT(c->tallies);
    for (int i = 0; i < c->nthreads; i++) Py_VISIT(c->threads[i].item);
    return 0;
}

static int core_clear(Core *c) {
    Py_CLEAR(c->made);
    Py_CLEAR(c->last);
    Py_CLEAR(c->tallies);
    for (int i = 0; i < c->nthreads; i++) Py_CLEAR(c->threads[i].item);
    c->nthreads = 0;
    return 0;
}

static void core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    core_clear(c);
    for (Py_ssize_t i = 0; i < CAPACITY; i++)
        if (c->slots[i] != NULL) free_entry(c->slots[i]);
    PyMem_Free(c->out);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *core_hits(Core *c, void *Py_UNUSED(closure)) { return PyLong_FromLong(c->hits); }

static PyMethodDef core_methods[] = {
    {"until_miss", (PyCFunction)until_miss, METH_O, "Write repeats until a line is not one: that item, None, or True (call write_to)."},
    {"predict", (PyCFunction)predict, METH_O, "The JSON line a repeat would get, or None; changes nothing."},
    {"add", (PyCFunction)add, METH_O, "Add a line the annotator wrote; True when output is waiting."},
    {"write_to", (PyCFunction)write_to, METH_O, "Write the output so far to a binary stream."},
    {"take_last", (PyCFunction)take_last, METH_NOARGS, "[(tid, item)]: each thread's last repeat since the last take."},
    {"remember", (PyCFunction)remember, METH_VARARGS, "Keep a line's record as its repeats' template."},
    {"counts", (PyCFunction)counts, METH_NOARGS, "{(syscall, category): repeats written}."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"hits", (getter)core_hits, NULL, "lines written as repeats", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracing._repeats.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Repeated lines' JSON from kept templates (see tracing.repeats).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
    .tp_getset = core_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_repeats", "Lines that repeat a call already annotated (see tracing.repeats).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__repeats(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    TS_NAME = PyUnicode_InternFromString("ts");
    RESUMED_NAME = PyUnicode_InternFromString("resumed_text");
    if (TS_NAME == NULL || RESUMED_NAME == NULL) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
