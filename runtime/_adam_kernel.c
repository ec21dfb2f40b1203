/* edge_ad.runtime._adam_kernel: torch.optim.Adam's update as ONE pass over memory (CPU, float32).
 *
 * The exported graphs spell Adam as 10 elementwise ONNX ops per tensor; onnxruntime runs each as a
 * separate pass over the weights (measured ~18 ms per seed and step at width 32 vs ~5 ms here, see
 * benchmarks/README.md). This kernel does exactly the same float32 arithmetic in the same order
 * (built with -ffp-contract=off: no fused multiply-adds), so it is bit-identical to the graphs'
 * Adam and to the NumPy fallback in runtime/host_adam.py:
 *
 *   m' = b1 * m + g                 (moments kept scaled: m~ = m / (1 - beta1), v~ = v / (1 - beta2))
 *   v' = b2 * v + g * g
 *   p' = p - m' / (alpha * sqrt(v') + eps_k)
 *
 * adam_update(p, m, v, g, b1, b2, alpha, eps_k, p0=None)
 *   p, m, v: writable C-contiguous float32 buffers of n elements, updated in place;
 *   g:       readable float32 buffer of n elements (the gradient);
 *   p0:      optional readable float32 buffer: the first step of a search. The weights are read from
 *            p0 (the pristine copy) and the moments are taken as zero (m and v are only written), so
 *            no per-frame reset of p, m, v is needed.
 * The GIL is released while the loop runs, so searches of several seeds run on several cores.
 * Element types are checked by the Python wrapper (runtime/host_adam.py); sizes are checked here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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

static PyObject *adam_update(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"p", "m", "v", "g", "b1", "b2", "alpha", "eps_k", "p0", NULL};
    Py_buffer p, m, v, g, p0;
    PyObject *p0_obj = Py_None;
    float b1, b2, alpha, eps_k;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "w*w*w*y*ffff|O", kwlist, &p, &m, &v, &g, &b1, &b2,
                                     &alpha, &eps_k, &p0_obj))
        return NULL;
    int have_p0 = p0_obj != Py_None;
    if (have_p0 && PyObject_GetBuffer(p0_obj, &p0, PyBUF_SIMPLE) != 0) {
        PyBuffer_Release(&p); PyBuffer_Release(&m); PyBuffer_Release(&v); PyBuffer_Release(&g);
        return NULL;
    }
    PyObject *result = Py_None;
    Py_ssize_t nbytes = p.len;
    if (m.len != nbytes || v.len != nbytes || g.len != nbytes || (have_p0 && p0.len != nbytes)
            || nbytes % (Py_ssize_t)sizeof(float) != 0) {
        PyErr_Format(PyExc_ValueError, "adam_update: buffer sizes differ (p %zd, m %zd, v %zd, g %zd%s bytes)",
                     p.len, m.len, v.len, g.len, have_p0 ? ", p0 given" : "");
        result = NULL;
    } else {
        Py_ssize_t n = nbytes / (Py_ssize_t)sizeof(float);
        Py_BEGIN_ALLOW_THREADS
        adam_loop((float *)p.buf, (float *)m.buf, (float *)v.buf, (const float *)g.buf,
                  have_p0 ? (const float *)p0.buf : NULL, n, b1, b2, alpha, eps_k);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&p); PyBuffer_Release(&m); PyBuffer_Release(&v); PyBuffer_Release(&g);
    if (have_p0) PyBuffer_Release(&p0);
    if (result == Py_None) Py_INCREF(Py_None);
    return result;
}

static PyMethodDef methods[] = {
    {"adam_update", (PyCFunction)(void (*)(void))adam_update, METH_VARARGS | METH_KEYWORDS,
     "adam_update(p, m, v, g, b1, b2, alpha, eps_k, p0=None): one in-place Adam step, one pass (float32)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_adam_kernel",
                                    "Fused single-pass Adam update for float32 buffers (see runtime/host_adam.py).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__adam_kernel(void) { return PyModule_Create(&module); }
