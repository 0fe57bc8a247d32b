"""numpy references of the recurrent cells (SimpleRNN, LSTM, GRU), shared by the RNN tests."""
import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- numpy references of the cells

def ref_simple_rnn(x, w, h0=None):
    kernel, rec, bias = w
    h = np.zeros((x.shape[0], rec.shape[0])) if h0 is None else h0[0]
    hs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ rec + bias)
        hs.append(h)
    return np.stack(hs, 1), [h]


def ref_lstm(x, w, h0=None):
    kernel, rec, bias = w
    u = rec.shape[0]
    h, c = (np.zeros((x.shape[0], u)), np.zeros((x.shape[0], u))) if h0 is None else h0
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ rec + bias
        i, f, o = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u]), _sigmoid(z[:, 3 * u:])
        c = f * c + i * np.tanh(z[:, 2 * u:3 * u])
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), [h, c]


def ref_gru(x, w, h0=None, reset_after=True):
    kernel, rec, bias = w
    u = rec.shape[0]
    h = np.zeros((x.shape[0], u)) if h0 is None else h0[0]
    hs = []
    for t in range(x.shape[1]):
        if reset_after:
            xz = x[:, t] @ kernel + bias[0]
            inner = h @ rec + bias[1]
            z = _sigmoid(xz[:, :u] + inner[:, :u])
            r = _sigmoid(xz[:, u:2 * u] + inner[:, u:2 * u])
            hh = np.tanh(xz[:, 2 * u:] + r * inner[:, 2 * u:])
        else:
            xz = x[:, t] @ kernel + bias
            z = _sigmoid(xz[:, :u] + h @ rec[:, :u])
            r = _sigmoid(xz[:, u:2 * u] + h @ rec[:, u:2 * u])
            hh = np.tanh(xz[:, 2 * u:] + (r * h) @ rec[:, 2 * u:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs, 1), [h]


REFS = {"SimpleRNN": ref_simple_rnn, "LSTM": ref_lstm, "GRU": ref_gru}
