"""Cases of the grader's rules (a helper module, not a test file), shared by the tests that read
them (test_source_rules.py) and that grade them (test_autograde_rules.py): the ways to loop
("DO NOT write loops"), the other ways to convolve than method 2's convolve, and honest forms
of every piece that must keep full marks."""

from autograde_helpers import reference, with_regions

# Loops, each a correct FCLayer.ComputeUp (it must keep its outputs' points): name -> (code,
# what the grader names, a word of the line it is named at).
LOOPS = {
    "for": ("output = np.zeros((inputs.shape[0], self.w_.shape[0]))\n"
            "for n in range(inputs.shape[0]):\n"
            "    output[n] = self.w_ @ inputs[n] + self.b_[0]", "for loop", "for n"),
    "while": ("output = np.zeros((inputs.shape[0], self.w_.shape[0]))\nn = 0\n"
              "while n < inputs.shape[0]:\n    output[n] = self.w_ @ inputs[n] + self.b_[0]\n    n += 1",
              "while loop", "while"),
    "list_comprehension": ("output = np.array([self.w_ @ row for row in inputs]) + self.b_",
                           "list comprehension", "for row"),
    "generator": ("output = np.stack(tuple(self.w_ @ row for row in inputs)) + self.b_",
                  "generator expression", "for row"),
    "map": ("output = np.array(list(map(lambda row: self.w_ @ row, inputs))) + self.b_", "map()", "map("),
    "filter": ("output = np.array(list(filter(lambda row: True, inputs))) @ self.w_.T + self.b_",
               "filter()", "filter("),
    "reduce": ("import functools\n"
               "output = np.vstack(functools.reduce(lambda rows, row: rows + [self.w_ @ row], inputs, []))"
               " + self.b_", "functools.reduce()", "reduce("),
    "reduce_alias": ("from functools import reduce as fold\n"
                     "output = np.vstack(fold(lambda rows, row: rows + [self.w_ @ row], inputs, [])) + self.b_",
                     "functools.reduce()", "fold("),
    "itertools": ("import itertools as it\n"
                  "output = np.array(list(it.starmap(np.dot, it.product(inputs, [self.w_.T])))) + self.b_",
                  "itertools.starmap (itertools)", "starmap"),
    "exec": ('scope = {"inputs": inputs, "w": self.w_, "rows": []}\n'
             'exec("for row in inputs:\\n    rows.append(w @ row)", scope)\n'
             'output = np.array(scope["rows"]) + self.b_', "exec() (code run from text)", "exec("),
    "eval": ('output = np.array(eval("[w @ row for row in inputs]", {"inputs": inputs, "w": self.w_})) + self.b_',
             "eval() (code run from text)", "eval("),
    "compile": ('scope = {"inputs": inputs, "w": self.w_}\n'
                'code = compile("rows = [w @ row for row in inputs]", "<rows>", "exec")\n'
                'exec(code, scope)\noutput = np.array(scope["rows"]) + self.b_',
                "compile() (code run from text)", "compile("),
    "frompyfunc": ("dot = np.frompyfunc(lambda n, k: self.w_[k] @ inputs[n], 2, 1)\n"
                   "output = dot(*np.indices((inputs.shape[0], self.w_.shape[0]))).astype(float) + self.b_",
                   "numpy.frompyfunc()", "frompyfunc"),
    "vectorize": ("dot = np.vectorize(lambda n, k: self.w_[k] @ inputs[n])\n"
                  "output = dot(*np.indices((inputs.shape[0], self.w_.shape[0]))) + self.b_",
                  "numpy.vectorize()", "vectorize"),
    "apply_along_axis": ("output = np.apply_along_axis(lambda row: self.w_ @ row, 1, inputs) + self.b_",
                         "numpy.apply_along_axis()", "apply_along_axis"),
    "sum_over_rows": ("output = inputs @ self.w_.T + sum(self.b_[np.newaxis])", "sum() over an iterable", "sum("),
    "zip": ("output = np.array(list(zip(*(inputs @ self.w_.T).T))) + self.b_", "zip()", "zip("),
    "iter_sentinel": ("items = iter(list(inputs) + [None])\n"
                      "output = np.array(list(iter(lambda: next(items), None))) @ self.w_.T + self.b_",
                      "iter(f, sentinel)", "iter(lambda"),
    "getattr_builtins": ("import builtins\n"
                         "rows = getattr(builtins, 'ma' + 'p')(lambda row: self.w_ @ row, inputs)\n"
                         "output = np.array(list(rows)) + self.b_",
                         "getattr() with a computed name", "getattr("),
    "dunder_dict": ("dot = np.__dict__['frompy' + 'func'](lambda n, k: self.w_[k] @ inputs[n], 2, 1)\n"
                    "output = dot(*np.indices((inputs.shape[0], self.w_.shape[0]))).astype(float) + self.b_",
                    "__dict__", "__dict__"),
    "recursion": ("output = self._rows(inputs) + self.b_", "recursion (_rows calls itself)", "def _rows"),
    "mutual_recursion": ("output = self._even(inputs) + self.b_", "recursion", "def _"),
    "iterable_class": ("output = np.array(list(_Rows(inputs @ self.w_.T))) + self.b_",
                       "__getitem__ (makes its objects iterable)", "def __getitem__"),
}
# What some of LOOPS need beside the method: (methods appended to the class, code before it).
LOOP_SUPPORT = {
    "recursion": ("\n    def _rows(self, x):\n        if len(x) == 0:\n"
                  "            return np.zeros((0, self.w_.shape[0]))\n"
                  "        return np.vstack([self.w_ @ x[0], self._rows(x[1:])])\n", ""),
    "mutual_recursion": ("\n    def _even(self, x):\n        if len(x) == 0:\n"
                         "            return np.zeros((0, self.w_.shape[0]))\n"
                         "        return np.vstack([self.w_ @ x[0], self._odd(x[1:])])\n"
                         "\n    def _odd(self, x):\n        return self._even(x)\n", ""),
    "iterable_class": ("", "class _Rows:\n    def __init__(self, x):\n        self.x = x\n\n"
                           "    def __getitem__(self, n):\n        return self.x[n]\n"),
}
PLACES = ("region", "above_region", "helper_function", "helper_method", "module_level")


def _indent(code, spaces):
    return "".join(" " * spaces + line + "\n" if line else "\n" for line in code.splitlines())


def fc_with_loop(name, place):
    """fc_layer.py whose ComputeUp computes its outputs with LOOPS[name], the loop put at `place`:
    in the region; above the region in the method (the region a no-op); in a module-level
    function or a method the region calls; or in a function that module-level code installs."""
    code, _, _ = LOOPS[name]
    methods, before = LOOP_SUPPORT.get(name, ("", ""))
    if place == "region":
        return with_regions("fc_layer.py", {"FCLayer.ComputeUp": code}, append=methods, prepend=before)
    if place == "above_region":
        source = with_regions("fc_layer.py", {"FCLayer.ComputeUp": "pass"}, append=methods, prepend=before)
        marker = "        # BEGIN SOLUTION\n"
        return source.replace(marker, _indent(code, 8) + marker, 1)
    if place == "helper_function":
        helper = "\n\ndef _forward(self, inputs):\n" + _indent(code, 4) + "    return output\n"
        return with_regions("fc_layer.py", {"FCLayer.ComputeUp": "output = _forward(self, inputs)"},
                            append=methods + helper, prepend=before)
    if place == "helper_method":
        helper = "\n    def _forward(self, inputs):\n" + _indent(code, 8) + "        return output\n"
        return with_regions("fc_layer.py", {"FCLayer.ComputeUp": "output = self._forward(inputs)"},
                            append=methods + helper, prepend=before)
    assert place == "module_level"
    helper = ("\n\ndef _forward(self, inputs):\n    inputs = inputs.reshape(inputs.shape[0], -1)\n"
              + _indent(code, 4)
              + "    return self.ApplyActivation(output)\n\n\nFCLayer.ComputeUp = _forward\n")
    return with_regions("fc_layer.py", {}, append=methods + helper, prepend=before)


# Method 2 computed some other way: name -> ({piece: region code}, [(what the grader names, quantity)]).
_PAD = "np.pad(inputs, ((0, 0), (0, 0), (self.padding_,) * 2, (self.padding_,) * 2))"
OTHER_CONVOLUTIONS = {
    "method1_kernels": ({
        "ConvLayer.ComputeUp": "outputs = convolutions.correlate(inputs, w_flip[:, :, ::-1, ::-1], "
                               "padding=self.padding_)",
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    w_back = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)\n"
            "    dC_by_dinputs = convolutions.correlate(deriv, w_back, padding=k - self.padding_ - 1)\n"
            "dw = convolutions.correlate_weight_derivative(inputs, deriv, k, padding=self.padding_)")},
        ["convolutions.correlate (method 1)", "convolutions.correlate_weight_derivative (method 1)"]),
    "aliased_kernels": ({
        "ConvLayer.ComputeUp": "outputs = _corr(inputs, w_flip[:, :, ::-1, ::-1], padding=self.padding_)",
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    dC_by_dinputs = _corr(deriv, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), "
            "padding=k - self.padding_ - 1)\n"
            "dw = _dw(inputs, deriv, k, padding=self.padding_)")},
        ["convolutions.correlate (method 1)", "convolutions.correlate_weight_derivative (method 1)"]),
    "scipy_signal": ({
        "ConvLayer.ComputeUp": ("from scipy import signal\n"
                                f"padded = {_PAD}\n"
                                "outputs = signal.fftconvolve(padded[:, np.newaxis], w_flip[np.newaxis], "
                                "mode='valid', axes=(3, 4)).sum(axis=2)"),
        "ConvLayer.ComputeDown": (
            "import scipy.signal\n"
            "if not self.is_input_:\n"
            "    q = k - self.padding_ - 1\n"
            "    padded = np.pad(deriv, ((0, 0), (0, 0), (q, q), (q, q)))\n"
            "    dC_by_dinputs = scipy.signal.fftconvolve(padded[:, :, np.newaxis], w[np.newaxis], mode='valid',"
            " axes=(3, 4)).sum(axis=1)\n"
            f"padded = {_PAD}\n"
            "dw = scipy.signal.fftconvolve(padded[:, np.newaxis], deriv_flip[:, :, np.newaxis], mode='valid', "
            "axes=(3, 4)).sum(axis=0)")},
        ["scipy.signal"]),
    "hand_made_im2col": ({
        "ConvLayer.ComputeUp": ("from numpy.lib.stride_tricks import sliding_window_view as windows\n"
                                f"patches = windows({_PAD}, (k, k), axis=(2, 3))\n"
                                "outputs = np.einsum('ncyxij,fcij->nfyx', patches, w_flip[:, :, ::-1, ::-1])"),
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    q = k - self.padding_ - 1\n"
            "    padded = np.pad(deriv, ((0, 0), (0, 0), (q, q), (q, q)))\n"
            "    patches = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))\n"
            "    dC_by_dinputs = np.einsum('nfyxij,fcij->ncyx', patches, w[:, :, ::-1, ::-1])\n"
            f"patches = np.lib.stride_tricks.sliding_window_view({_PAD}, deriv.shape[2:], axis=(2, 3))\n"
            "dw = np.einsum('ncijyx,nfyx->fcij', patches, deriv)")},
        ["sliding_window_view (a hand-made im2col)"]),
    "decoy_convolve": ({  # convolve called, its result thrown away; the kernel found by a computed name
        "ConvLayer.ComputeUp": ("convolutions.convolve(inputs[:, np.newaxis], w_flip[np.newaxis], "
                                "padding=self.padding_)\n"
                                "outputs = getattr(convolutions, 'corr' + 'elate')(inputs, w_flip[:, :, ::-1, ::-1], "
                                "padding=self.padding_)"),
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
            "                                          padding=k - self.padding_ - 1).sum(axis=1)\n"
            "convolutions.convolve(inputs[:, np.newaxis], deriv_flip[:, :, np.newaxis], padding=self.padding_)\n"
            "dw = getattr(convolutions, 'correlate_weight_' + 'derivative')(inputs, deriv, k, "
            "padding=self.padding_)")},
        []),
}
OTHER_CONVOLUTIONS_PREPEND = {
    "aliased_kernels": ("from convolutions import correlate as _corr\n\n"
                        "_dw = convolutions.correlate_weight_derivative\n"),
}


def conv_other_way(name):
    codes, _ = OTHER_CONVOLUTIONS[name]
    return with_regions("conv_layer.py", codes, prepend=OTHER_CONVOLUTIONS_PREPEND.get(name, ""))


# Honest forms: (fc_layer.py regions, conv_layer.py regions, {"crlf": bool, "fc_append": ..., ...}).
HONEST = {
    "einsum": ({
        "FCLayer.ComputeUp": "output = np.einsum('nf,kf->nk', inputs, self.w_) + self.b_",
        "FCLayer.ComputeDown": ("if not self.is_input_:\n    dC_by_dinputs = np.einsum('nk,kf->nf', deriv, self.w_)\n"
                                "dw = np.einsum('nk,nf->kf', deriv, inputs)\ndb = np.einsum('nk->k', deriv)")}, {
        "ConvLayer.ComputeUp": ("outputs = np.einsum('nkcyx->nkyx', convolutions.convolve(inputs[:, np.newaxis], "
                                "w_flip[np.newaxis], padding=self.padding_))"),
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    dC_by_dinputs = np.einsum('nkcyx->ncyx', convolutions.convolve(deriv[:, :, np.newaxis], "
            "w[np.newaxis], padding=k - self.padding_ - 1))\n"
            "dw = np.einsum('nkcij->kcij', convolutions.convolve(inputs[:, np.newaxis], deriv_flip[:, :, np.newaxis],"
            " padding=self.padding_))")}, {}),
    "tensordot_crlf": ({
        "FCLayer.ComputeUp": "output = np.tensordot(inputs, self.w_, axes=([1], [1])) + self.b_",
        "FCLayer.ComputeDown": ("if not self.is_input_:\n    dC_by_dinputs = np.tensordot(deriv, self.w_, axes=1)\n"
                                "dw = np.tensordot(deriv, inputs, axes=([0], [0]))\n"
                                "db = np.tensordot(np.ones(len(deriv)), deriv, axes=1)")}, {
        "ConvLayer.ComputeUp": ("import convolutions as conv\n"
                                "outputs = np.tensordot(conv.convolve(inputs[:, np.newaxis], w_flip[np.newaxis], "
                                "padding=self.padding_), np.ones(C), axes=([2], [0]))"),
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    full = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis], padding=k - self.padding_ - 1)\n"
            "    dC_by_dinputs = np.tensordot(np.ones(K), full, axes=([0], [1]))\n"
            "dw = np.tensordot(np.ones(batch_size), convolutions.convolve(inputs[:, np.newaxis], "
            "deriv_flip[:, :, np.newaxis], padding=self.padding_), axes=1)")}, {"crlf": True}),
    "layouts_in_place": ({
        "FCLayer.ComputeUp": "output = np.matmul(self.w_, inputs.T).T\noutput += self.b_",
        "FCLayer.ComputeDown": ("deriv *= 1.0\nif not self.is_input_:\n    dC_by_dinputs = (self.w_.T @ deriv.T).T\n"
                                "dw = (inputs.T @ deriv).T.copy()\ndw *= 1\ndb = np.ones((1, len(deriv))) @ deriv")}, {
        "ConvLayer.ComputeUp": (f"padded = {_PAD}\n"
                                "outputs = convolutions.convolve(padded[:, np.newaxis], w_flip[np.newaxis])\n"
                                "outputs = outputs.transpose(0, 2, 1, 3, 4).sum(axis=1)\noutputs += 0.0"),
        "ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    q = k - self.padding_ - 1\n"
            "    padded = np.pad(deriv, ((0, 0), (0, 0), (q, q), (q, q)))\n"
            "    dC_by_dinputs = convolutions.convolve(padded[:, :, np.newaxis], w[np.newaxis]).sum(axis=1)\n"
            "# the convolution the other way round: the inputs are the kernel\n"
            "dw = convolutions.convolve(deriv_flip[:, :, np.newaxis], inputs[:, np.newaxis],\n"
            "                           padding=k - 1 - self.padding_).sum(axis=0)\n"
            "dw *= 1.0")}, {}),
    "state_and_helpers": ({  # ComputeDown reads what ComputeUp kept; helpers without loops; shapes iterated
        "FCLayer.ComputeUp": "self.kept_ = inputs\noutput = _affine(inputs, self.w_, self.b_)",
        "FCLayer.ComputeDown": ("if not self.is_input_:\n    dC_by_dinputs = deriv @ self.w_\n"
                                "dw = deriv.T @ self.kept_.reshape(len(self.kept_), -1)\n"
                                "db = deriv.sum(axis=0, keepdims=True)")}, {
        "ConvLayer.ComputeUp": ("self.kept_ = inputs\nself.flipped_ = w_flip\n"
                                "outputs = self._convolve(inputs[:, np.newaxis], w_flip[np.newaxis],\n"
                                "                         self.padding_).sum(axis=2)"),
        "ConvLayer.ComputeDown": (
            "shape = tuple(self.kept_.shape)\nassert max(shape[2], 0) == inputs.shape[2]\n"
            "if not self.is_input_:\n"
            "    dC_by_dinputs = self._convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
            "                                   k - self.padding_ - 1).sum(axis=1)\n"
            "dw = self._convolve(self.kept_[:, np.newaxis], deriv_flip[:, :, np.newaxis], self.padding_).sum(axis=0)")},
        {"fc_prepend": "import functools  # imported, never used\n\n\ndef _affine(x, w, b):\n    return x @ w.T + b\n",
         "conv_append": "\n    def _convolve(self, x, kernel, padding):\n"
                        "        return convolutions.convolve(x, np.ascontiguousarray(kernel), padding=padding)\n"}),
}


def honest(name):
    """(fc_layer.py, conv_layer.py) of HONEST[name]."""
    fc, conv, extra = HONEST[name]
    fc_source = with_regions("fc_layer.py", fc, prepend=extra.get("fc_prepend", ""))
    conv_source = with_regions("conv_layer.py", conv, append=extra.get("conv_append", ""))
    if extra.get("crlf"):
        fc_source, conv_source = (s.replace("\n", "\r\n") for s in (fc_source, conv_source))
    return fc_source, conv_source


def reference_pair():
    return reference("fc_layer.py"), reference("conv_layer.py")
