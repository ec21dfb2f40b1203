/* edge_ad.runtime._adam_kernel: torch.optim.Adam's update as ONE pass over memory (CPU, float32).
 *
 * The exported graphs spell Adam as 10 elementwise ONNX ops per tensor; onnxruntime runs each as a
 * separate pass over the weights (measured ~18 ms per seed and step at width 32 vs ~5 ms here, see
 * benchmarks/README.md). This kernel does exactly the same float32 arithmetic in the same order
 * (built with -ffp-contract=off: no fused multiply-adds), so it is bit-identical to the graphs'
 * Adam and to the NumPy fallback in runtime/backends/host_adam.py:
 *
 *   m' = b1 * m + g                 (moments kept scaled: m~ = m / (1 - beta1), v~ = v / (1 - beta2))
 *   v' = b2 * v + g * g
 *   p' = p - m' / (alpha * sqrt(v') + eps_k)
 *
 * adam_update(p, m, v, g, b1, b2, alpha, eps_k, p0=None)
 *   p, m, v: writable C-contiguous float32 buffers of n elements, updated in place;
 *   g:       readable C-contiguous float32 buffer of n elements (the gradient);
 *   p0:      optional readable float32 buffer: the first step of a search. The weights are read from
 *            p0 (the pristine copy) and the moments are taken as zero (m and v are only written), so
 *            no per-frame reset of p, m, v is needed.
 * The GIL is released while the loop runs, so searches of several seeds run on several cores.
 * Element type (buffer format 'f'), contiguity and sizes are checked here; the Python wrapper
 * (runtime/backends/host_adam.py) also refuses overlapping or misaligned arrays (the pointers are restrict).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static void adam_loop(float *restrict p, float *restrict m, float *restrict v, const float *restrict g,
                      const float *restrict p0, Py_ssize_t n, float b1, float b2, float alpha, float eps_k) {
    if (p0) {
        for (Py_ssize_t i = 0; i < n; i++) {
            const float gi = g[i];
            const float mi = gi;                  /* b1 * 0 + g: exactly g in IEEE arithmetic */
            const float vi = gi * gi;             /* b2 * 0 + g * g */
            m[i] = mi;
            v[i] = vi;
            p[i] = p0[i] - mi / (sqrtf(vi) * alpha + eps_k);
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            const float gi = g[i];
            const float mi = m[i] * b1 + gi;
            const float vi = v[i] * b2 + gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] - mi / (sqrtf(vi) * alpha + eps_k);
        }
    }
}

/* Acquire a C-contiguous float32 buffer (writable if asked); 0 on success, -1 with an exception set. */
static int get_f32(PyObject *obj, const char *name, int writable, Py_buffer *view) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "adam_update: %s must be a %sC-contiguous float32 buffer", name,
                     writable ? "writable " : "");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->itemsize != (Py_ssize_t)sizeof(float) || strcmp(f, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "adam_update: %s must hold float32, got format '%s'", name,
                     view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *adam_update(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"p", "m", "v", "g", "b1", "b2", "alpha", "eps_k", "p0", NULL};
    PyObject *objs[5] = {NULL, NULL, NULL, NULL, Py_None};
    static const char *names[5] = {"p", "m", "v", "g", "p0"};
    Py_buffer views[5];
    float b1, b2, alpha, eps_k;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOffff|O", kwlist, &objs[0], &objs[1], &objs[2], &objs[3],
                                     &b1, &b2, &alpha, &eps_k, &objs[4]))
        return NULL;
    int n_views = objs[4] == Py_None ? 4 : 5, got = 0;
    PyObject *result = NULL;
    for (; got < n_views; got++)
        if (get_f32(objs[got], names[got], got < 3, &views[got]) != 0) goto done;
    Py_ssize_t n = views[0].len / (Py_ssize_t)sizeof(float);
    for (int i = 1; i < n_views; i++) {
        if (views[i].len != views[0].len) {
            PyErr_Format(PyExc_ValueError, "adam_update: %s has %zd elements, p has %zd", names[i],
                         views[i].len / (Py_ssize_t)sizeof(float), n);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    adam_loop((float *)views[0].buf, (float *)views[1].buf, (float *)views[2].buf, (const float *)views[3].buf,
              n_views == 5 ? (const float *)views[4].buf : NULL, n, b1, b2, alpha, eps_k);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"adam_update", (PyCFunction)(void (*)(void))adam_update, METH_VARARGS | METH_KEYWORDS,
     "adam_update(p, m, v, g, b1, b2, alpha, eps_k, p0=None): one in-place Adam step, one pass (float32)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_adam_kernel",
                                    "Fused single-pass Adam update for float32 buffers (see runtime/backends/host_adam.py).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__adam_kernel(void) { return PyModule_Create(&module); }
