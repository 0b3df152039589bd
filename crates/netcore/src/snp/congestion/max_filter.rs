//! A windowed maximum over the last `window` rounds, in constant space: Kathleen Nichols'
//! three-sample estimator (as Linux's `win_minmax.c`). It keeps the best, second-best and
//! third-best samples of different ages, so when the best ages out the next is ready.

/// The running maximum of a value over a window of rounds.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxFilter {
    /// `(round, value)`, best first; the later ones are newer and no larger.
    s: [(u64, u64); 3],
}

impl MaxFilter {
    /// The maximum in the window (0 before any sample).
    pub fn get(&self) -> u64 {
        self.s[0].1
    }

    /// Takes `value`, measured in `round`, keeping the maximum over the last `window` rounds.
    pub fn update(&mut self, round: u64, value: u64, window: u64) {
        let sample = (round, value);
        if value >= self.s[0].1 || round.saturating_sub(self.s[2].0) > window {
            self.s = [sample; 3];
            return;
        }
        if value >= self.s[1].1 {
            self.s[1] = sample;
            self.s[2] = sample;
        } else if value >= self.s[2].1 {
            self.s[2] = sample;
        }
        // Age the best out, keeping the others spread over the window.
        if round.saturating_sub(self.s[0].0) > window {
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = sample;
            if round.saturating_sub(self.s[0].0) > window {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
            }
        } else if self.s[1].0 == self.s[0].0 && round.saturating_sub(self.s[1].0) > window / 4 {
            self.s[1] = sample;
            self.s[2] = sample;
        } else if self.s[2].0 == self.s[1].0 && round.saturating_sub(self.s[2].0) > window / 2 {
            self.s[2] = sample;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_maximum_and_ages_it_out() {
        let mut f = MaxFilter::default();
        f.update(0, 100, 10);
        for r in 1..=10 {
            f.update(r, 50 + r, 10);
            assert_eq!(f.get(), 100, "round {r}");
        }
        // Round 11: the 100 from round 0 is out of the window; the best left is from the
        // newer samples.
        f.update(11, 40, 10);
        assert!(f.get() < 100 && f.get() >= 55, "{}", f.get());
        // A larger sample takes over at once.
        f.update(12, 500, 10);
        assert_eq!(f.get(), 500);
    }

    #[test]
    fn a_steady_value_stays() {
        let mut f = MaxFilter::default();
        for r in 0..100 {
            f.update(r, 7, 10);
            assert_eq!(f.get(), 7);
        }
    }
}
