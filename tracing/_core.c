/* The compiled twins of three small loops: a scanner and two template fillers.
 *
 * copy_lines (twin: tracing/read/scan.py). A server under load prints the
 * same call line after line, differing only in its time and duration. The
 * annotator keeps, in a dict, the calls it has decided while its model stands
 * still (key: the line's pid text and its call without time or duration).
 * This loop takes the lines whose key is there, one row each, and stops at
 * the first that is not: Python parses that one. It knows the prefix grammar
 * of a strace line (scan.py's _KEY) and how -T ends one.
 *
 * fill (twin: tracing/render/fill.py). Each renderer keeps a form per call: a
 * template with slots for a row's own fields. This fills the forms of a run
 * of rows into one text.
 *
 * slices (twin: tracing/render/fill.py). Trace Event slices of a run of rows,
 * each placed on its thread's track (moved past the slice before it, edges kept
 * apart), from the form of its call: a slice's JSON around its times and line.
 *
 * Neither knows what a call means or reads an object's attributes: dicts,
 * tuples, strings and numbers only. The tests hold each to its twin on every
 * recorded log.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define NUMBER 64  /* a time or duration this long is read by Python's float() */

static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef struct {
    Py_ssize_t pid_end;          /* the pid text is [0, pid_end); 0: none */
    Py_ssize_t ts_at, ts_end;    /* the seconds, or an empty range */
    Py_ssize_t body_at, body_end;
    Py_ssize_t dur_at, dur_end;  /* the -T duration's digits, or an empty range */
    Py_ssize_t text_end;         /* the line without its "\n" */
} Split;

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

static Py_UCS4 at(const Text *t, Py_ssize_t i) { return i < t->n ? PyUnicode_READ(t->kind, t->data, i) : 0; }

static int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }

static Py_ssize_t digits(const Text *t, Py_ssize_t i) {
    while (is_digit(at(t, i))) i++;
    return i;
}

static Py_ssize_t spaces(const Text *t, Py_ssize_t i) {
    while (at(t, i) == ' ') i++;
    return i;
}

/* `(?:<[^>\n]{0,64}>)?` at i: the index after it (i if there is none). */
static Py_ssize_t comm(const Text *t, Py_ssize_t i) {
    if (at(t, i) != '<')
        return i;
    for (Py_ssize_t j = i + 1; j <= i + 65 && j < t->n; j++) {
        Py_UCS4 c = at(t, j);
        if (c == '>')
            return j + 1;
        if (c == '\n')
            break;
    }
    return i;
}

/* `\d{1,10}` then comm then what `then` must see: a run of at most ten digits. */
static Py_ssize_t pid_digits(const Text *t, Py_ssize_t i) {
    Py_ssize_t j = digits(t, i);
    return j > i && j - i <= 10 ? j : -1;
}

/* `\[pid +\d{1,10}(?:<..>)?\] ` or `\d{1,10}(?:<..>)? +`: the index after it, or 0. */
static Py_ssize_t pid(const Text *t) {
    Py_ssize_t i, j;
    if (at(t, 0) == '[' && at(t, 1) == 'p' && at(t, 2) == 'i' && at(t, 3) == 'd' && at(t, 4) == ' ') {
        i = spaces(t, 5);
        if ((j = pid_digits(t, i)) < 0)
            return 0;
        j = comm(t, j);
        return at(t, j) == ']' && at(t, j + 1) == ' ' ? j + 2 : 0;
    }
    if ((j = pid_digits(t, 0)) < 0)
        return 0;
    i = comm(t, j);
    if (at(t, i) != ' ' && i != j)  /* the comm did not end in spaces: without it */
        i = j;
    return at(t, i) == ' ' ? spaces(t, i) : 0;
}

/* `(?:\[ *\d{1,5}\] +)?(?:\[(?:[0-9a-f]{8,16}|\?{8,16})\] +)?` at i. */
static Py_ssize_t number_ip(const Text *t, Py_ssize_t i) {
    if (at(t, i) == '[') {
        Py_ssize_t a = spaces(t, i + 1), b = digits(t, a);
        if (b > a && b - a <= 5 && at(t, b) == ']' && at(t, b + 1) == ' ')
            i = spaces(t, b + 1);
    }
    if (at(t, i) == '[') {
        Py_ssize_t j = i + 1;
        Py_UCS4 first = at(t, j);
        while (first == '?' ? at(t, j) == '?' : (is_digit(at(t, j)) || (at(t, j) >= 'a' && at(t, j) <= 'f')))
            j++;
        if (j - i - 1 >= 8 && j - i - 1 <= 16 && at(t, j) == ']' && at(t, j + 1) == ' ')
            i = spaces(t, j + 1);
    }
    return i;
}

/* `\d{1,12}\.\d+` exactly over [a, b). */
static int is_seconds(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t d = digits(t, a);
    return d > a && d - a <= 12 && d < b && at(t, d) == '.' && d + 1 < b && digits(t, d + 1) == b;
}

static void split(const Text *t, Split *p) {
    Py_ssize_t i = p->pid_end = pid(t), j;
    i = spaces(t, i);
    p->ts_at = p->ts_end = 0;
    j = digits(t, i);
    if (j > i && j - i <= 12 && at(t, j) == '.' && is_digit(at(t, j + 1))) {
        Py_ssize_t k = digits(t, j + 1);
        if (at(t, k) == ' ')
            p->ts_at = i, p->ts_end = k, i = spaces(t, k);
    }
    p->body_at = number_ip(t, i);
    p->text_end = t->n > 0 && at(t, t->n - 1) == '\n' ? t->n - 1 : t->n;
    p->body_end = p->text_end;
    p->dur_at = p->dur_end = 0;
    if (p->body_end > p->body_at && at(t, p->body_end - 1) == '>') {
        Py_ssize_t k = p->body_end - 2;  /* rfind(" <") in the body */
        while (k > p->body_at && !(at(t, k) == ' ' && at(t, k + 1) == '<'))
            k--;
        if (k > p->body_at && at(t, k) == ' ' && at(t, k + 1) == '<' && is_seconds(t, k + 2, p->body_end - 1))
            p->dur_at = k + 2, p->dur_end = p->body_end - 1, p->body_end = k;
    }
}

/* float(text[a:b]), for a run of ASCII digits and one dot. */
static PyObject *number(PyObject *raw, const Text *t, Py_ssize_t a, Py_ssize_t b) {
    char buf[NUMBER + 1];
    /* Clinger's fast path: digits below 2**53 divided by an exact power of ten are one
     * correctly rounded division, the double strtod gives (a log's times and durations). */
    double n = 0.0;
    int places = -1, digits = 0, fast = 1;
    for (Py_ssize_t i = a; i < b && fast; i++) {
        Py_UCS4 c = at(t, i);
        if (c == '.' && places < 0)
            places = 0;
        else if (c >= '0' && c <= '9') {
            n = n * 10.0 + (double)(c - '0');
            places += places >= 0;
            digits++;
            fast = n < 9007199254740992.0;
        } else
            fast = 0;
    }
    if (fast && digits && places <= 22)
        return PyFloat_FromDouble(places > 0 ? n / POW10[places] : n);
    if (b - a <= NUMBER) {
        for (Py_ssize_t i = a; i < b; i++)
            buf[i - a] = (char)at(t, i);
        buf[b - a] = '\0';
        double v = PyOS_string_to_double(buf, NULL, NULL);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        return PyFloat_FromDouble(v);
    }
    PyObject *s = PyUnicode_Substring(raw, a, b), *f;
    if (s == NULL)
        return NULL;
    f = PyFloat_FromString(s);
    Py_DECREF(s);
    return f;
}

/* The row of a line whose key is in `live`, or NULL with no error (not taken). */
typedef struct {
    PyObject *live, *last, *at;
    double window, brief;
    int has_window;
} Tables;

static int take(const Tables *tb, PyObject *item, PyObject *rows) {  /* 2: a row (or taken), 1: passed over, 0: not taken */
    PyObject *raw = PyTuple_GET_ITEM(item, 1), *key = NULL, *got, *ts = NULL, *dur = NULL;
    PyObject *body, *pidtext, *row = NULL;
    Text t;
    Split p;
    int taken = 0;
    if (!PyUnicode_Check(raw))
        return 0;
    t.kind = PyUnicode_KIND(raw), t.data = PyUnicode_DATA(raw), t.n = PyUnicode_GET_LENGTH(raw);
    split(&t, &p);
    body = PyUnicode_Substring(raw, p.body_at, p.body_end);
    if (body == NULL)
        return -1;
    if (p.pid_end > 0) {
        if ((pidtext = PyUnicode_Substring(raw, 0, p.pid_end)) == NULL) {
            Py_DECREF(body);
            return -1;
        }
    } else {
        pidtext = Py_NewRef(Py_None);
    }
    key = PyTuple_Pack(2, pidtext, body);
    Py_DECREF(pidtext);
    Py_DECREF(body);
    if (key == NULL)
        return -1;
    got = PyDict_GetItemWithError(tb->live, key);  /* borrowed */
    Py_DECREF(key);
    if (got == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (got == Py_False)  /* a line passed over: no row, its thread's last call stays */
        return 1;
    if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 4) {
        PyErr_SetString(PyExc_TypeError, "live values are (call, tid, flags, forms) or False");
        return -1;
    }
    PyObject *call = PyTuple_GET_ITEM(got, 0), *tid = PyTuple_GET_ITEM(got, 1), *forms = PyTuple_GET_ITEM(got, 3);
    long flags = PyLong_AsLong(PyTuple_GET_ITEM(got, 2));
    if (flags == -1 && PyErr_Occurred())
        return -1;
    int waits = flags & 1;
    if (p.dur_end > p.dur_at && (flags & 4 || rows != Py_None)) {
        if ((dur = number(raw, &t, p.dur_at, p.dur_end)) == NULL)
            return -1;
        if (flags & 4 && PyFloat_AS_DOUBLE(dur) >= tb->brief)
            goto done;  /* it slept long enough to be said: Python reads it */
    } else {
        dur = Py_NewRef(Py_None);
    }
    if (p.ts_end > p.ts_at) {
        if ((ts = number(raw, &t, p.ts_at, p.ts_end)) == NULL)
            goto fail;
        if (waits && tb->has_window) {
            PyObject *then = PyDict_GetItemWithError(tb->at, tid);
            if (then == NULL && PyErr_Occurred())
                goto done;
            if (then != NULL && then != Py_None) {
                double before = PyFloat_AsDouble(then);
                if (before == -1.0 && PyErr_Occurred())
                    goto done;
                if (PyFloat_AS_DOUBLE(ts) - before >= tb->window) {
                    taken = 0;
                    goto done;
                }
            }
        }
    } else {
        ts = Py_NewRef(Py_None);
    }
    if (PyDict_SetItem(tb->last, tid, item) < 0 || PyDict_SetItem(tb->at, tid, flags & 2 ? Py_None : ts) < 0)
        goto fail;
    taken = 2;
    if (rows == Py_None)  /* the learning pass: no rows */
        goto done;
    PyObject *source = PyTuple_GET_SIZE(item) > 2 ? PyTuple_GET_ITEM(item, 2) : Py_None;
    if ((row = PyTuple_Pack(8, call, PyTuple_GET_ITEM(item, 0), ts, dur, raw, source, Py_None, forms)) == NULL
        || PyList_Append(rows, row) < 0)
        goto fail;
    goto done;
fail:
    taken = -1;
done:
    if (PyErr_Occurred() && taken >= 0)
        taken = -1;
    Py_XDECREF(ts);
    Py_XDECREF(dur);
    Py_XDECREF(row);
    return taken;
}

static PyObject *copy_lines(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *items, *rows, *window;
    Tables tb;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "OO!O!O!OOnd", &items, &PyDict_Type, &tb.live, &PyDict_Type, &tb.last,
                          &PyDict_Type, &tb.at, &window, &rows, &most, &tb.brief))
        return NULL;
    if (rows != Py_None && !PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows is a list, or None");
        return NULL;
    }
    tb.has_window = window != Py_None;
    tb.window = tb.has_window ? PyFloat_AsDouble(window) : 0.0;
    if (tb.has_window && tb.window == -1.0 && PyErr_Occurred())
        return NULL;
    for (;;) {
        PyObject *item = PyIter_Next(items);
        if (item == NULL)
            return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
        int got = PyTuple_Check(item) && PyTuple_GET_SIZE(item) >= 2 ? take(&tb, item, rows) : 0;
        if (got < 0) {
            Py_DECREF(item);
            return NULL;
        }
        if (got == 0)
            return item;  /* Python reads it */
        Py_DECREF(item);
        if (got == 2 && rows != Py_None && PyList_GET_SIZE(rows) >= most)
            return Py_NewRef(Py_True);
    }
}

/* -- fill ------------------------------------------------------------- */

typedef struct {
    char *bytes;
    Py_ssize_t len, cap;
} Buf;

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (n == 0)
        return 0;
    if (b->len + n > b->cap) {
        Py_ssize_t cap = (b->cap ? b->cap : 4096);
        while (cap < b->len + n)
            cap *= 2;
        char *more = PyMem_Realloc(b->bytes, cap);
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->bytes = more, b->cap = cap;
    }
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    return 0;
}

/* The UTF-8 of a str (n its length), or NULL with an error. */
static const char *utf8(PyObject *s, Py_ssize_t *n) {
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "a form's text and an as-is slot are str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(s, n);
}

static int put_str(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = utf8(s, &n);
    return u == NULL ? -1 : put(b, u, n);
}

/* repr(x) where x is a whole number below 2**53 (its digits and ".0"), or a decimal of at
 * most six places below 2**33 (a log's times and durations): x is n / 10**6 for an integer
 * n, doubles there are closer than 10**-6 apart, so no decimal of six places or fewer but
 * n's own reads back as x, and n's digits, trailing zeros dropped, are the shortest repr()
 * finds. Below 1e-4 repr() writes an exponent. 0: not this way (dtoa's). */
static Py_ssize_t decimal_repr(double x, char *out) {
    double ax = fabs(x), n;
    long long whole, frac;
    char digits[24], *p = out;
    int k = 0, last = 5;

    if (x == 0.0)
        return (Py_ssize_t)(signbit(x) ? stpcpy(out, "-0.0") - out : stpcpy(out, "0.0") - out);
    if (ax < 9007199254740992.0 && ax == floor(ax))
        whole = (long long)ax, frac = 0;
    else if (ax >= 1e-4 && ax < 8589934592.0 && (n = nearbyint(ax * 1e6)) / 1e6 == ax)
        whole = (long long)n / 1000000, frac = (long long)n % 1000000;
    else
        return 0;
    if (x < 0)
        *p++ = '-';
    do
        digits[k++] = (char)('0' + whole % 10);
    while ((whole /= 10) > 0);
    while (k > 0)
        *p++ = digits[--k];
    *p++ = '.';
    for (int i = 5; i >= 0; i--, frac /= 10)
        p[i] = (char)('0' + frac % 10);
    while (last > 0 && p[last] == '0')
        last--;
    p += last + 1;
    *p = '\0';
    return p - out;
}

static int put_double(Buf *b, double x) {
    char num[40];
    Py_ssize_t len = decimal_repr(x, num);
    if (len > 0)
        return put(b, num, len);
    char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return -1;
    int got = put(b, r, (Py_ssize_t)strlen(r));
    PyMem_Free(r);
    return got;
}

/* repr() of an int or a float, "null" for None. */
static int put_number(Buf *b, PyObject *v) {
    if (v == Py_None)
        return put(b, "null", 4);
    if (PyFloat_CheckExact(v))
        return put_double(b, PyFloat_AS_DOUBLE(v));
    if (PyLong_CheckExact(v)) {
        char num[32];
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && !(n == -1 && PyErr_Occurred()))
            return put(b, num, snprintf(num, sizeof(num), "%lld", n));
        PyErr_Clear();
    }
    PyObject *r = PyObject_Repr(v);
    if (r == NULL)
        return -1;
    int got = put_str(b, r);
    Py_DECREF(r);
    return got;
}

static int put_slot(Buf *b, PyObject *row, long code, PyObject *quote) {
    long field = code >> 2, how = code & 3;
    if (field < 0 || field >= PyTuple_GET_SIZE(row)) {
        PyErr_SetString(PyExc_IndexError, "a form's slot names no field of the row");
        return -1;
    }
    PyObject *v = PyTuple_GET_ITEM(row, field), *q;
    int got;
    switch (how) {
    case 0:
        return put_number(b, v);
    case 1:
        if (v == Py_None)
            return put(b, "null", 4);
        if ((q = PyObject_CallOneArg(quote, v)) == NULL)
            return -1;
        got = put_str(b, q);
        Py_DECREF(q);
        return got;
    case 2: {  /* a line's text: without its final newline */
        Py_ssize_t n;
        const char *u = utf8(v, &n);
        if (u == NULL)
            return -1;
        return put(b, u, n > 0 && u[n - 1] == '\n' ? n - 1 : n);
    }
    default: {
        char num[32];
        long long n = PyLong_AsLongLong(v);
        if (n == -1 && PyErr_Occurred())
            return -1;
        int len = snprintf(num, sizeof(num), "%7lld", n);
        return put(b, num, len);
    }
    }
}

static int put_row(Buf *b, PyObject *row, PyObject *form, PyObject *quote) {
    Py_ssize_t n = PyTuple_GET_SIZE(form);
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *part = PyTuple_GET_ITEM(form, j);
        if (j % 2 == 0) {
            if (put_str(b, part) < 0)
                return -1;
            continue;
        }
        long code = PyLong_AsLong(part);
        if ((code == -1 && PyErr_Occurred()) || put_slot(b, row, code, quote) < 0)
            return -1;
    }
    return 0;
}

/* fill's and slices' arguments: a list of rows, and an index into it (past the end: none left). */
static int check_rows(PyObject *rows, Py_ssize_t *start) {
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows is a list");
        return -1;
    }
    if (*start < 0) {
        PyErr_SetString(PyExc_ValueError, "start is an index into rows");
        return -1;
    }
    if (*start > PyList_GET_SIZE(rows))
        *start = PyList_GET_SIZE(rows);
    return 0;
}

/* A row's forms (borrowed), or NULL with TypeError for what is not a row. */
static PyObject *forms_of(PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 8 || !PyDict_Check(PyTuple_GET_ITEM(row, 7))) {
        PyErr_SetString(PyExc_TypeError, "a row is a tuple whose 8th field is its call's forms");
        return NULL;
    }
    return PyTuple_GET_ITEM(row, 7);
}

static PyObject *fill(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *rows, *key, *quote, *text = NULL;
    Py_ssize_t start, i;
    Buf b = {NULL, 0, 0};
    if (!PyArg_ParseTuple(args, "OnOO", &rows, &start, &key, &quote))
        return NULL;
    if (check_rows(rows, &start) < 0)
        return NULL;
    for (i = start; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i), *forms, *form;
        if ((forms = forms_of(row)) == NULL)
            goto fail;
        if ((form = PyDict_GetItemWithError(forms, key)) == NULL) {
            if (PyErr_Occurred())
                goto fail;
            break;
        }
        if (!PyTuple_Check(form) || PyTuple_GET_SIZE(form) % 2 == 0) {
            PyErr_SetString(PyExc_TypeError, "a form is a tuple (text, slot, text, ..., text)");
            goto fail;
        }
        if ((i > start && put(&b, "\n", 1) < 0) || put_row(&b, row, form, quote) < 0)
            goto fail;
    }
    text = PyUnicode_DecodeUTF8(b.bytes ? b.bytes : "", b.len, "strict");
    PyMem_Free(b.bytes);
    if (text == NULL)
        return NULL;
    return Py_BuildValue("Nn", text, i);
fail:
    PyMem_Free(b.bytes);
    return NULL;
}

/* -- slices ------------------------------------------------------------ */

#define EPOCH_US 1125899906842624.0  /* 2**50: from here on doubles are 0.25 apart, already rounded */
#define STEP_US 0.25

/* round(x, 3) as Python rounds a float: the multiple of 0.001 nearest x's exact value. */
static int round3(double x, double *out) {
    double t = x * 1000.0;
    /* Below 2**40, t is within 2**-13 of x's exact value times 1000: unless its fraction is
     * that close to a half, the nearest integer is the exact one's, and n / 1000.0 (one
     * correctly rounded division) is the double Python's digits read back give. */
    if (fabs(t) < 1099511627776.0) {
        double whole = floor(t), frac = t - whole;
        if (fabs(frac - 0.5) > 0.001) {
            double n = frac < 0.5 ? whole : whole + 1.0;
            *out = n == 0.0 ? copysign(0.0, x) : n / 1000.0;
            return 0;
        }
    }
    char *s = PyOS_double_to_string(x, 'f', 3, 0, NULL);
    if (s == NULL)
        return -1;
    *out = PyOS_string_to_double(s, NULL, NULL);
    PyMem_Free(s);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static double at_least_zero(double x) { return x > 0.0 ? x : 0.0; }  /* max(0.0, x), NaN too */

typedef struct {
    PyObject *wanted, *roles, *loop, *track_end, *track_zero, *counts;
} Tracks;

/* fill.place: the slice moved past the one before it on its track, edges kept apart. */
static int place(const Tracks *t, PyObject *tid, double *start, double *dur, Py_ssize_t *moved) {
    PyObject *last = PyDict_GetItemWithError(t->track_end, tid), *zero, *v;
    if (last == NULL && PyErr_Occurred())
        return -1;
    if (last != NULL) {
        double end = PyFloat_AsDouble(last);
        if (end == -1.0 && PyErr_Occurred())
            return -1;
        if (*start < end) {
            (*moved)++;
            *dur = at_least_zero(*start + *dur - end);
            *start = end;
        }
        if (*start == end) {
            int was_zero = 0;
            if (*dur != 0) {
                if ((zero = PyDict_GetItemWithError(t->track_zero, tid)) == NULL && PyErr_Occurred())
                    return -1;
                if (zero != NULL && (was_zero = PyObject_IsTrue(zero)) < 0)
                    return -1;
            }
            if (*dur == 0 || was_zero) {
                *start += STEP_US;
                *dur = at_least_zero(*dur - STEP_US);
            }
        }
    }
    *dur = (*start + *dur) - *start;
    if ((v = PyFloat_FromDouble(*start + *dur)) == NULL)
        return -1;
    int got = PyDict_SetItem(t->track_end, tid, v);
    Py_DECREF(v);
    if (got < 0 || PyDict_SetItem(t->track_zero, tid, *dur == 0 ? Py_True : Py_False) < 0)
        return -1;
    return 0;
}

/* A row's slice, or 1: a row `slices` leaves to Python; -1: an error. */
static int put_slice(Buf *b, const Tracks *t, PyObject *row, PyObject *key, int first, Py_ssize_t *moved) {
    PyObject *line = PyTuple_GET_ITEM(row, 1), *ts = PyTuple_GET_ITEM(row, 2), *duration = PyTuple_GET_ITEM(row, 3);
    PyObject *request = PyTuple_GET_ITEM(row, 6), *forms = PyTuple_GET_ITEM(row, 7), *form, *role_now, *n;
    if (ts == Py_None)
        return 0;
    if ((form = PyDict_GetItemWithError(forms, key)) == NULL)
        return PyErr_Occurred() ? -1 : 1;
    if (!PyTuple_CheckExact(form) || (request != Py_None && PyObject_IsTrue(request)))
        return 1;
    int in = PyDict_Contains(t->wanted, line);
    if (in != 0)
        return in < 0 ? -1 : 1;
    if (PyTuple_GET_SIZE(form) != 7 || !PyFloat_CheckExact(ts) || !(duration == Py_None || PyFloat_CheckExact(duration))) {
        PyErr_SetString(PyExc_TypeError, "a slice's form is (head, args head, args tail, count, role, tid, pid), "
                                         "its row's time a float and its duration a float or None");
        return -1;
    }
    PyObject *count = PyTuple_GET_ITEM(form, 3), *role = PyTuple_GET_ITEM(form, 4), *tid = PyTuple_GET_ITEM(form, 5);
    if ((role_now = PyDict_GetItemWithError(t->roles, tid)) == NULL && PyErr_Occurred())
        return -1;
    int same = role_now == NULL ? 0 : PyObject_RichCompareBool(role_now, t->loop, Py_EQ);
    if (same < 0 || (!same && PyDict_SetItem(t->roles, tid, role) < 0))
        return -1;
    double s = PyFloat_AS_DOUBLE(ts), d = duration == Py_None ? 0.0 : PyFloat_AS_DOUBLE(duration), start, dur;
    if (d == 0.0)  /* `duration or 0.0` */
        d = 0.0;
    start = s * 1e6;
    if (!(start >= EPOCH_US) && round3(start, &start) < 0)
        return -1;
    if (round3((s + d - s) * 1e6, &dur) < 0 || place(t, tid, &start, &dur, moved) < 0)
        return -1;
    if ((!first && put(b, ",\n", 2) < 0) || put_str(b, PyTuple_GET_ITEM(form, 0)) < 0 || put_double(b, start) < 0
        || put(b, ", \"dur\": ", 9) < 0 || put_double(b, dur) < 0 || put(b, ", \"pid\": ", 9) < 0
        || put_number(b, PyTuple_GET_ITEM(form, 6)) < 0 || put(b, ", \"tid\": ", 9) < 0 || put_number(b, tid) < 0
        || put(b, ", ", 2) < 0 || put_str(b, PyTuple_GET_ITEM(form, 1)) < 0 || put_number(b, line) < 0
        || put_str(b, PyTuple_GET_ITEM(form, 2)) < 0)
        return -1;
    PyObject *was = PyDict_GetItemWithError(t->counts, count);
    if (was == NULL && PyErr_Occurred())
        return -1;
    long long before = was == NULL ? 0 : PyLong_AsLongLong(was);
    if ((before == -1 && PyErr_Occurred()) || (n = PyLong_FromLongLong(before + 1)) == NULL)
        return -1;
    int got = PyDict_SetItem(t->counts, count, n);
    Py_DECREF(n);
    return got < 0 ? -1 : 2;
}

static PyObject *slices(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *rows, *key, *text;
    Tracks t;
    Py_ssize_t start, i, moved = 0;
    int first = 1;
    Buf b = {NULL, 0, 0};
    if (!PyArg_ParseTuple(args, "OnOO!O!UO!O!O!", &rows, &start, &key, &PyDict_Type, &t.wanted, &PyDict_Type,
                          &t.roles, &t.loop, &PyDict_Type, &t.track_end, &PyDict_Type, &t.track_zero,
                          &PyDict_Type, &t.counts))
        return NULL;
    if (check_rows(rows, &start) < 0)
        return NULL;
    for (i = start; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (forms_of(row) == NULL)
            goto fail;
        int got = put_slice(&b, &t, row, key, first, &moved);
        if (got < 0)
            goto fail;
        if (got == 1)
            break;
        if (got == 2)
            first = 0;
    }
    text = PyUnicode_DecodeUTF8(b.bytes ? b.bytes : "", b.len, "strict");
    PyMem_Free(b.bytes);
    if (text == NULL)
        return NULL;
    return Py_BuildValue("Nnn", text, i, moved);
fail:
    PyMem_Free(b.bytes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"copy_lines", copy_lines, METH_VARARGS,
     "copy_lines(items, live, last, at, window, rows, most, brief): see tracing.read.scan.copy_lines"},
    {"fill", fill, METH_VARARGS, "fill(rows, start, key, quote): see tracing.render.fill"},
    {"slices", slices, METH_VARARGS,
     "slices(rows, start, key, wanted, roles, loop, track_end, track_zero, counts): see tracing.render.fill"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
