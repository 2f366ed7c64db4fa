/* metering._fastpath: ingest._native_candidate in C (decision 15 in docs/decisions.md).
 *
 * native_candidate(index, ev, catalog, oldest, newest, memo) -> Candidate | None
 *
 * The same checks, in the same order, with the same result as the Python
 * function `ingest._py_native_candidate`, which stays the reference: None sends
 * the event to the general checks, which give the exact outcome. Tests hold the
 * two to the same candidate for generated events (tests/metering/test_fast_path.py).
 *
 * What C does itself: the layout and digits of the UTC timestamp, the printable
 * check of ASCII ids, the ISO form of the timestamp, the content hash's JSON head
 * (orjson's form: compact, only '"' and '\' escaped, as printable strings need no
 * other escape) and its BLAKE2b-128 (RFC 7693; hashlib's digest for the same
 * bytes). What it calls back into Python for: orjson.dumps of the properties, the
 * schema verdict on a new property set (ingest._schema_problem), the Decimal of a
 * new value (ingest._value_text), str.isprintable of a non-ASCII id, and the
 * Candidate constructor. `configure` hands it those objects once, at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

/* --- BLAKE2b, unkeyed, 16-byte digest (RFC 7693) ------------------------------------ */

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* the message word order of each round; rounds 10 and 11 reuse rows 0 and 1 */
static const uint8_t B2_SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint64_t b2_rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t b2_load(const uint8_t *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

#define B2_G(a, b, c, d, x, y)              \
    do {                                    \
        v[a] = v[a] + v[b] + (x);           \
        v[d] = b2_rotr(v[d] ^ v[a], 32);    \
        v[c] = v[c] + v[d];                 \
        v[b] = b2_rotr(v[b] ^ v[c], 24);    \
        v[a] = v[a] + v[b] + (y);           \
        v[d] = b2_rotr(v[d] ^ v[a], 16);    \
        v[c] = v[c] + v[d];                 \
        v[b] = b2_rotr(v[b] ^ v[c], 63);    \
    } while (0)

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++) m[i] = b2_load(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t;  /* the byte counter's high word stays 0: inputs are far below 2**64 bytes */
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r % 10];
        B2_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* The hex digest (32 characters) of BLAKE2b-128 over a then b, as one message. */
static void b2_128_hex(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       char out[32]) {
    uint64_t h[8];
    uint8_t block[128];
    size_t fill = 0;
    uint64_t t = 0;
    memcpy(h, B2_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ 16; /* depth 1, fanout 1, no key, 16-byte digest */
    const uint8_t *parts[2] = {a, b};
    size_t lens[2] = {alen, blen};
    for (int p = 0; p < 2; p++) {
        const uint8_t *src = parts[p];
        size_t n = lens[p];
        while (n > 0) {
            if (fill == 128) { /* a full block with more input after it: not the last */
                t += 128;
                b2_compress(h, block, t, 0);
                fill = 0;
            }
            size_t take = 128 - fill < n ? 128 - fill : n;
            memcpy(block + fill, src, take);
            fill += take;
            src += take;
            n -= take;
        }
    }
    memset(block + fill, 0, 128 - fill);
    t += fill;
    b2_compress(h, block, t, 1);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        uint8_t byte = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
}

/* --- module state (set once by configure) --------------------------------------------- */

static PyObject *Candidate;      /* ingest.Candidate */
static PyObject *orjson_dumps;   /* orjson.dumps */
static PyObject *sort_keys;      /* orjson.OPT_SORT_KEYS */
static PyObject *encode_error;   /* orjson.JSONEncodeError */
static PyObject *unset;          /* msgspec.UNSET */
static PyObject *decimal_type;   /* decimal.Decimal */
static PyObject *value_text;     /* ingest._value_text */
static PyObject *schema_problem; /* ingest._schema_problem */
static PyObject *max_int;        /* ingest.MAX_INT */
static PyObject *neg_max_int;    /* -ingest.MAX_INT */
static PyObject *option_kwnames; /* ("option",) */
static PyObject *utc;            /* datetime.UTC */

static PyObject *s_source, *s_event_id, *s_customer_ref, *s_metric, *s_timestamp, *s_value,
    *s_properties, *s_effective_from, *s_aggregation, *s_value_property, *s_id, *s_schema,
    *s_values, *s_isprintable, *s_count, *s_unique_count;

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *objs[10];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO:configure", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &objs[9]))
        return NULL;
    PyObject **slots[10] = {&Candidate,    &orjson_dumps,   &sort_keys, &encode_error,
                            &unset,        &decimal_type,   &value_text, &schema_problem,
                            &max_int,      &utc};
    for (int i = 0; i < 10; i++) {
        Py_INCREF(objs[i]);
        Py_XSETREF(*slots[i], objs[i]);
    }
    Py_XSETREF(neg_max_int, PyNumber_Negative(max_int));
    if (neg_max_int == NULL) return NULL;
    Py_RETURN_NONE;
}

/* --- the checks ------------------------------------------------------------------------ */

/* str.isprintable() of an exact str (1: yes, 0: no, -1: error). */
static int printable(PyObject *s) {
    if (PyUnicode_IS_ASCII(s)) {
        const unsigned char *p = PyUnicode_1BYTE_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        for (Py_ssize_t i = 0; i < n; i++)
            if (p[i] < 0x20 || p[i] == 0x7f) return 0;
        return 1;
    }
    PyObject *r = PyObject_CallMethodNoArgs(s, s_isprintable);
    if (r == NULL) return -1;
    int ok = r == Py_True;
    Py_DECREF(r);
    return ok;
}

static inline int digits(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS.ffffffZ or YYYY-MM-DDTHH:MM:SSZ (ingest._utc_z_form) with valid digits
 * and ranges (what datetime.fromisoformat accepts of those forms): 1 and the fields, or 0. */
static int parse_z(PyObject *raw, int f[7]) {
    if (!PyUnicode_CheckExact(raw) || !PyUnicode_IS_ASCII(raw)) return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(raw);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(raw);
    if (!(n == 20 || (n == 27 && s[19] == '.')) || s[n - 1] != 'Z') return 0;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return 0;
    if (!digits(s, 4, &f[0]) || !digits(s + 5, 2, &f[1]) || !digits(s + 8, 2, &f[2]) ||
        !digits(s + 11, 2, &f[3]) || !digits(s + 14, 2, &f[4]) || !digits(s + 17, 2, &f[5]))
        return 0;
    f[6] = 0;
    if (n == 27 && !digits(s + 20, 6, &f[6])) return 0;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = f[0], m = f[1], d = f[2];
    if (y < 1 || m < 1 || m > 12 || d < 1) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] + (m == 2 && leap)) return 0;
    if (f[3] > 23 || f[4] > 59 || f[5] > 59) return 0;
    return 1;
}

/* Append s (an exact str) to buf as orjson writes it inside quotes: '"' and '\' escaped (the
 * string is printable: no other character needs escaping). Returns the new end, or NULL. */
static char *put_json_str(char *buf, PyObject *s) {
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') *buf++ = '\\';
        *buf++ = p[i];
    }
    return buf;
}

static int lt(PyObject *a, PyObject *b) { return PyObject_RichCompareBool(a, b, Py_LT); }

/* The new references a native_candidate call holds, released on every way out. */
typedef struct {
    PyObject *ts, *version, *props_owned, *number, *value, *vtext, *props_json, *problem, *memo_key,
        *ts_iso, *hash, *props_str, *schema, *values, *id;
} Held;

static void release(Held *h) {
    Py_XDECREF(h->ts);
    Py_XDECREF(h->version);
    Py_XDECREF(h->number);
    Py_XDECREF(h->value);
    Py_XDECREF(h->vtext);
    Py_XDECREF(h->props_owned);
    Py_XDECREF(h->props_json);
    Py_XDECREF(h->problem);
    Py_XDECREF(h->memo_key);
    Py_XDECREF(h->ts_iso);
    Py_XDECREF(h->hash);
    Py_XDECREF(h->props_str);
    Py_XDECREF(h->schema);
    Py_XDECREF(h->values);
    Py_XDECREF(h->id);
}

#define FAIL goto error
#define NOT_COMMON goto none

static PyObject *native_candidate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "native_candidate(index, ev, catalog, oldest, newest, memo)");
        return NULL;
    }
    if (Candidate == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "metering._fastpath is not configured");
        return NULL;
    }
    PyObject *index = args[0], *ev = args[1], *catalog = args[2], *oldest = args[3],
             *newest = args[4], *memo = args[5];
    Held h = {0};
    PyObject *source = NULL, *event_id = NULL, *ref = NULL, *code = NULL, *raw_ts = NULL;
    PyObject *result = NULL;
    int r, f[7];

    raw_ts = PyObject_GetAttr(ev, s_timestamp);
    if (raw_ts == NULL) FAIL;
    source = PyObject_GetAttr(ev, s_source);
    event_id = source ? PyObject_GetAttr(ev, s_event_id) : NULL;
    ref = event_id ? PyObject_GetAttr(ev, s_customer_ref) : NULL;
    code = ref ? PyObject_GetAttr(ev, s_metric) : NULL;
    if (code == NULL) FAIL;
    if (!PyUnicode_CheckExact(source) || !PyUnicode_CheckExact(event_id) ||
        !PyUnicode_CheckExact(ref) || !PyUnicode_CheckExact(code))
        NOT_COMMON;
    if (!parse_z(raw_ts, f)) NOT_COMMON;
    PyObject *ids[4] = {source, event_id, ref, code};
    for (int i = 0; i < 4; i++) {
        r = printable(ids[i]);
        if (r < 0) FAIL;
        if (!r) NOT_COMMON;
    }
    h.ts = PyDateTimeAPI->DateTime_FromDateAndTime(f[0], f[1], f[2], f[3], f[4], f[5], f[6], utc,
                                                  PyDateTimeAPI->DateTimeType);
    if (h.ts == NULL) FAIL;
    if ((r = lt(h.ts, oldest)) != 0) {
        if (r < 0) FAIL;
        NOT_COMMON;
    }
    if ((r = lt(newest, h.ts)) != 0) {
        if (r < 0) FAIL;
        NOT_COMMON;
    }
    PyObject *versions = PyDict_GetItemWithError(catalog, code); /* borrowed */
    if (versions == NULL) {
        if (PyErr_Occurred()) FAIL;
        NOT_COMMON;
    }
    if (!PyList_CheckExact(versions) || PyList_GET_SIZE(versions) == 0) NOT_COMMON;
    PyObject *version = h.version = Py_NewRef(PyList_GET_ITEM(versions, 0));
    {
        PyObject *eff = PyObject_GetAttr(version, s_effective_from);
        if (eff == NULL) FAIL;
        r = lt(h.ts, eff);
        Py_DECREF(eff);
        if (r < 0) FAIL;
        if (r) NOT_COMMON;
    }
    PyObject *aggregation = PyObject_GetAttr(version, s_aggregation);
    if (aggregation == NULL) FAIL;
    int unique = PyUnicode_Compare(aggregation, s_unique_count) == 0;
    int count = !unique && PyUnicode_Compare(aggregation, s_count) == 0;
    Py_DECREF(aggregation);
    if (PyErr_Occurred()) FAIL;
    if (unique) NOT_COMMON;

    PyObject *props = h.props_owned = PyObject_GetAttr(ev, s_properties);
    if (props == NULL) FAIL;
    if (props == Py_None || props == unset) {
        Py_SETREF(h.props_owned, PyDict_New());
        props = h.props_owned;
        if (props == NULL) FAIL;
    }
    if (!PyDict_CheckExact(props)) NOT_COMMON; /* msgspec gives a dict; anything else: general */
    PyObject *number = h.number = PyObject_GetAttr(ev, s_value);
    if (number == NULL) FAIL;
    if (number == Py_None || number == unset) {
        if (count) {
            number = Py_None;
        } else {
            PyObject *prop = PyObject_GetAttr(version, s_value_property);
            if (prop == NULL) FAIL;
            number = PyDict_GetItemWithError(props, prop);
            Py_DECREF(prop);
            if (number == NULL && PyErr_Occurred()) FAIL;
            if (number == NULL || !PyLong_CheckExact(number)) NOT_COMMON;
            Py_SETREF(h.number, Py_NewRef(number));
        }
    } else if (!PyLong_CheckExact(number)) {
        NOT_COMMON;
    }
    PyObject *value = h.value = Py_NewRef(Py_None), *vtext = h.vtext = Py_NewRef(Py_None);
    if (number != Py_None) {
        h.values = PyObject_GetAttr(memo, s_values);
        if (h.values == NULL) FAIL;
        PyObject *known = PyDict_GetItemWithError(h.values, number);
        if (known == NULL) {
            if (PyErr_Occurred()) FAIL;
            if ((r = lt(neg_max_int, number)) <= 0 || (r = lt(number, max_int)) <= 0) {
                if (r < 0) FAIL;
                NOT_COMMON;
            }
            PyObject *dec = PyObject_CallOneArg(decimal_type, number);
            if (dec == NULL) FAIL;
            PyObject *text = PyObject_CallOneArg(value_text, dec);
            if (text == NULL) {
                Py_DECREF(dec);
                FAIL;
            }
            known = PyTuple_Pack(2, dec, text);
            Py_DECREF(dec);
            Py_DECREF(text);
            if (known == NULL) FAIL;
            r = PyDict_SetItem(h.values, number, known);
            Py_DECREF(known); /* the memo holds it */
            if (r < 0) FAIL;
        }
        if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2) {
            PyErr_SetString(PyExc_TypeError, "memo.values holds (Decimal, str) pairs");
            FAIL;
        }
        value = PyTuple_GET_ITEM(known, 0);
        vtext = PyTuple_GET_ITEM(known, 1);
        Py_SETREF(h.value, Py_NewRef(value));
        Py_SETREF(h.vtext, Py_NewRef(vtext));
    }
    {
        PyObject *call[2] = {props, sort_keys};
        h.props_json = PyObject_Vectorcall(orjson_dumps, call, 1, option_kwnames);
    }
    if (h.props_json == NULL) {
        if (PyErr_ExceptionMatches(encode_error)) {
            PyErr_Clear();
            NOT_COMMON;
        }
        FAIL;
    }
    if (!PyBytes_CheckExact(h.props_json)) {
        PyErr_SetString(PyExc_TypeError, "orjson.dumps did not return bytes");
        FAIL;
    }
    /* the schema verdict: from the batch's memo, else ingest._schema_problem (which keeps it) */
    h.schema = PyObject_GetAttr(memo, s_schema);
    if (h.schema == NULL) FAIL;
    h.id = PyObject_GetAttr(version, s_id);
    if (h.id == NULL) FAIL;
    h.memo_key = PyTuple_Pack(2, h.id, h.props_json);
    if (h.memo_key == NULL) FAIL;
    PyObject *verdict = PyDict_GetItemWithError(h.schema, h.memo_key); /* borrowed */
    if (verdict == NULL) {
        if (PyErr_Occurred()) FAIL;
        PyObject *call[4] = {version, props, h.props_json, h.schema};
        h.problem = PyObject_Vectorcall(schema_problem, call, 4, NULL);
        if (h.problem == NULL) FAIL;
        verdict = h.problem;
    }
    if (verdict != Py_None) NOT_COMMON;
    const char *pj = PyBytes_AS_STRING(h.props_json);
    Py_ssize_t pjlen = PyBytes_GET_SIZE(h.props_json);
    if (pjlen >= 6 && memmem(pj, (size_t)pjlen, "\\u0000", 6) != NULL) NOT_COMMON;

    /* ts_iso: the raw string's date and time (with the fraction unless it is zero) + "+00:00" */
    {
        const char *s = (const char *)PyUnicode_1BYTE_DATA(raw_ts);
        int keep = f[6] ? 26 : 19;
        char iso[32];
        memcpy(iso, s, (size_t)keep);
        memcpy(iso + keep, "+00:00", 6);
        h.ts_iso = PyUnicode_FromStringAndSize(iso, keep + 6);
        if (h.ts_iso == NULL) FAIL;
    }
    /* the content hash: BLAKE2b-128 of orjson.dumps([ref, code, ts_iso, value_text]) + props */
    {
        Py_ssize_t rlen, clen, vlen = 0;
        if (PyUnicode_AsUTF8AndSize(ref, &rlen) == NULL) FAIL;
        if (PyUnicode_AsUTF8AndSize(code, &clen) == NULL) FAIL;
        const char *vt = NULL;
        if (vtext != Py_None) {
            vt = PyUnicode_AsUTF8AndSize(vtext, &vlen);
            if (vt == NULL) FAIL;
        }
        size_t cap = 2 * (size_t)(rlen + clen) + (size_t)vlen + 64;
        char stack[1024];
        char *head = cap <= sizeof stack ? stack : PyMem_Malloc(cap);
        if (head == NULL) {
            PyErr_NoMemory();
            FAIL;
        }
        char *p = head;
        *p++ = '[';
        *p++ = '"';
        p = put_json_str(p, ref);
        if (p != NULL) {
            memcpy(p, "\",\"", 3);
            p = put_json_str(p + 3, code);
        }
        if (p != NULL) {
            memcpy(p, "\",\"", 3);
            p += 3;
            Py_ssize_t tlen = PyUnicode_GET_LENGTH(h.ts_iso);
            memcpy(p, PyUnicode_1BYTE_DATA(h.ts_iso), (size_t)tlen);
            p += tlen;
            *p++ = '"';
            *p++ = ',';
            if (vt != NULL) {
                *p++ = '"';
                memcpy(p, vt, (size_t)vlen);
                p += vlen;
                *p++ = '"';
            } else {
                memcpy(p, "null", 4);
                p += 4;
            }
            *p++ = ']';
        }
        char digest[32];
        if (p != NULL)
            b2_128_hex((const uint8_t *)head, (size_t)(p - head), (const uint8_t *)pj,
                       (size_t)pjlen, digest);
        if (head != stack) PyMem_Free(head);
        if (p == NULL) FAIL;
        h.hash = PyUnicode_FromStringAndSize(digest, 32);
        if (h.hash == NULL) FAIL;
    }
    h.props_str = PyUnicode_DecodeUTF8(pj, pjlen, NULL);
    if (h.props_str == NULL) FAIL;
    {
        PyObject *call[12] = {index, source,   event_id, ref,    version, h.ts,
                              value, props,    h.hash,   ev,     h.props_str, h.ts_iso};
        result = PyObject_Vectorcall(Candidate, call, 12, NULL);
    }
    goto done;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(source);
    Py_XDECREF(event_id);
    Py_XDECREF(ref);
    Py_XDECREF(code);
    Py_XDECREF(raw_ts);
    release(&h);
    return result;
}

/* The content hash's digest of arbitrary bytes (for tests: hashlib.blake2b(data,
 * digest_size=16).hexdigest() must equal it). */
static PyObject *blake2b_128(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    char digest[32];
    b2_128_hex((const uint8_t *)view.buf, (size_t)view.len, NULL, 0, digest);
    PyBuffer_Release(&view);
    return PyUnicode_FromStringAndSize(digest, 32);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Candidate, orjson.dumps, OPT_SORT_KEYS, JSONEncodeError, msgspec.UNSET, "
     "Decimal, _value_text, _schema_problem, MAX_INT, UTC)"},
    {"native_candidate", (PyCFunction)(void (*)(void))native_candidate, METH_FASTCALL,
     "native_candidate(index, ev, catalog, oldest, newest, memo) -> Candidate | None"},
    {"blake2b_128", blake2b_128, METH_O, "BLAKE2b with a 16-byte digest, as hex"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "metering._fastpath", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    const char *names[] = {"source",         "event_id",    "customer_ref",   "metric",
                           "timestamp",      "value",       "properties",     "effective_from",
                           "aggregation",    "value_property", "id",          "schema",
                           "values",         "isprintable", "count",          "unique_count"};
    PyObject **slots[] = {&s_source,         &s_event_id,    &s_customer_ref, &s_metric,
                          &s_timestamp,      &s_value,       &s_properties,   &s_effective_from,
                          &s_aggregation,    &s_value_property, &s_id,        &s_schema,
                          &s_values,         &s_isprintable, &s_count,        &s_unique_count};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *slots[i] = PyUnicode_InternFromString(names[i]);
        if (*slots[i] == NULL) return NULL;
    }
    /* interned: orjson matches keyword names by identity */
    PyObject *option = PyUnicode_InternFromString("option");
    if (option == NULL) return NULL;
    option_kwnames = PyTuple_Pack(1, option);
    Py_DECREF(option);
    if (option_kwnames == NULL) return NULL;
    return PyModule_Create(&module);
}
