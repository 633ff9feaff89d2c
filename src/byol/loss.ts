import * as tf from '@tensorflow/tfjs-core';

/**
 * Row-wise l2 normalization, x / max(‖x‖, √ε) — the official code's `l2_normalize` (ε = 1e-12 on the
 * squared norm), so that an all-zero row gives zeros instead of NaN.
 */
export function l2Normalize(x: tf.Tensor2D, epsilon = 1e-12): tf.Tensor2D {
  return tf.tidy(() => {
    const squared = tf.sum(tf.square(x), -1, true);
    return tf.mul(x, tf.rsqrt(tf.maximum(squared, epsilon))) as tf.Tensor2D;
  });
}

/**
 * BYOL's per-example regression loss (paper eq. 2): ‖q̄ − z̄′‖² between the l2-normalized prediction and
 * target projection, which equals 2 − 2·cos(q, z′). Returns a vector with one value per example.
 */
export function regressionLoss(prediction: tf.Tensor2D, target: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const diff = tf.sub(l2Normalize(prediction), l2Normalize(target));
    return tf.sum(tf.square(diff), -1) as tf.Tensor1D;
  });
}

/**
 * The symmetrized BYOL loss (paper eq. 2 and the text after it): the two views swap roles and the two
 * batch-mean losses add, L = mean‖q̄₁ − z̄′₂‖² + mean‖q̄₂ − z̄′₁‖². `target1`/`target2` must carry no
 * gradient (the caller computes them outside the tape, or under a stop-gradient).
 */
export function symmetricLoss(
  prediction1: tf.Tensor2D,
  prediction2: tf.Tensor2D,
  target1: tf.Tensor2D,
  target2: tf.Tensor2D,
): tf.Scalar {
  return tf.tidy(() => tf.add(tf.mean(regressionLoss(prediction1, target2)), tf.mean(regressionLoss(prediction2, target1))));
}

/**
 * The negative-pair term of the paper's generalized objective InfoNCE^{α,β} (§5, Table 5b), for one
 * direction: 2α · mean_i ln( Σ_{j≠i} exp(S(q_i, z_j)/α) + Σ_j exp(S(q_i, z′_j)/α) ), with S the cosine
 * similarity, q the online predictions of one view, z the target projections of the same view (other
 * images of the batch are negatives) and z′ those of the other view. Added with weight β to the BYOL loss
 * it gives 2 − InfoNCE^{α,β}; β = 0 is BYOL.
 */
export function negativesTerm(
  prediction: tf.Tensor2D,
  targetSameView: tf.Tensor2D,
  targetOtherView: tf.Tensor2D,
  temperature: number,
): tf.Scalar {
  return tf.tidy(() => {
    const q = l2Normalize(prediction);
    const batch = q.shape[0];
    const same = tf.div(tf.matMul(q, l2Normalize(targetSameView), false, true), temperature);
    // Mask j = i on the same-view block: that pair is the image with itself under the same view.
    const masked = tf.sub(same, tf.mul(tf.eye(batch), 1e9));
    const other = tf.div(tf.matMul(q, l2Normalize(targetOtherView), false, true), temperature);
    const lse = tf.logSumExp(tf.concat([masked, other], 1), 1);
    return tf.mul(tf.mean(lse), 2 * temperature) as tf.Scalar;
  });
}

/**
 * Collapse metric: the standard deviation over the batch of the l2-normalized projections, averaged over
 * dimensions (as in SimSiam §4.1). About 1/√d for well-spread outputs, 0 when every image maps to the
 * same point.
 */
export function collapseStd(projections: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const { variance } = tf.moments(l2Normalize(projections), 0);
    return tf.mean(tf.sqrt(variance)) as tf.Scalar;
  });
}
