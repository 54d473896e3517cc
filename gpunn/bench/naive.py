"""The naive baseline: the equations of README's "The math" in plain NumPy, written as one would first write them.

Every step allocates its arrays afresh; nothing is fused, no buffer is reused, no
``out=``. The same algorithm as gpunn's benchmark runs: ReLU hidden layers, identity
output, bias, f = (1/m)||A_L - Y||_F^2, and Adam (torch.optim.Adam's update, with
bias correction). It is the yardstick for "what does the library buy over the
obvious loop", so keep it plain: do not optimise it. (``xp`` may be CuPy, to run the same loop
on a GPU; NumPy is the default and the point.)
"""
from __future__ import annotations

import numpy as np


class NaiveMLP:
    def __init__(self, layer_sizes, dtype="float32", seed=0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, xp=np):
        self.xp = xp
        rng = np.random.default_rng(seed)
        self.W = [xp.asarray((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype))
                  for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
        self.b = [xp.zeros(b, dtype) for b in layer_sizes[1:]]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.mW = [xp.zeros_like(W) for W in self.W]
        self.vW = [xp.zeros_like(W) for W in self.W]
        self.mb = [xp.zeros_like(b) for b in self.b]
        self.vb = [xp.zeros_like(b) for b in self.b]
        self.t = 0

    def forward(self, X):
        A, Zs, As = X, [], [X]
        L = len(self.W)
        for l in range(L):
            Z = A @ self.W[l] + self.b[l]
            A = self.xp.maximum(Z, 0) if l < L - 1 else Z
            Zs.append(Z)
            As.append(A)
        return Zs, As

    def gradients(self, X, Y):
        """(loss, dW, db) by those equations."""
        m = X.shape[0]
        Zs, As = self.forward(X)
        diff = As[-1] - Y
        loss = self.xp.sum(diff * diff) / m
        dA = (2.0 / m) * diff
        L = len(self.W)
        dW, db = [None] * L, [None] * L
        for l in range(L - 1, -1, -1):
            dZ = dA * (Zs[l] > 0) if l < L - 1 else dA
            dW[l] = As[l].T @ dZ
            db[l] = dZ.sum(axis=0)
            dA = dZ @ self.W[l].T
        return loss, dW, db

    def _adam(self, p, g, m, v):
        m[...] = self.beta1 * m + (1 - self.beta1) * g
        v[...] = self.beta2 * v + (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.t)
        v_hat = v / (1 - self.beta2 ** self.t)
        p -= (self.lr * m_hat / (self.xp.sqrt(v_hat) + self.eps)).astype(p.dtype)

    def train_step(self, X, Y):
        loss, dW, db = self.gradients(X, Y)
        self.t += 1
        for l in range(len(self.W)):
            self._adam(self.W[l], dW[l], self.mW[l], self.vW[l])
            self._adam(self.b[l], db[l], self.mb[l], self.vb[l])
        return loss

    def train_epoch(self, X, Y, batch_size, rng):
        """One epoch of shuffled mini-batches; returns the mean loss over batches."""
        order = self.xp.asarray(rng.permutation(X.shape[0]))
        total = 0.0
        for start in range(0, X.shape[0], batch_size):
            idx = order[start:start + batch_size]
            total += self.train_step(X[idx], Y[idx])
        return total / -(-X.shape[0] // batch_size)
