// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
use std::{marker::PhantomData, ops};

#[derive(Debug)]
pub(crate) struct Idx<T> {
    raw: usize,
    _ty: PhantomData<fn() -> T>,
}

impl<T> Copy for Idx<T> {}
impl<T> Clone for Idx<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> PartialEq for Idx<T> {
    fn eq(&self, other: &Idx<T>) -> bool {
        self.raw == other.raw
    }
}
impl<T> Eq for Idx<T> {}

impl<T> Idx<T> {
    pub(crate) fn from_raw(raw: usize) -> Idx<T> {
        Idx {
            raw,
            _ty: PhantomData,
        }
    }
    pub(crate) fn to_raw(self) -> usize {
        self.raw
    }
}

// ringmq patch: the items in a `Vec<Option<T>>` and the free indices on a
// stack of their own, where each slot was an enum of an item and a free-list
// link: for the reactor's source map (`T` an `Rc`, each idle connection keeps
// a readiness poll in it) 8 bytes a slot instead of 16. Reuse order is the
// same (the last freed index first).
#[derive(Debug)]
pub(crate) struct FreeList<T> {
    free: Vec<u32>,
    slots: Vec<Option<T>>,
}

impl<T> Default for FreeList<T> {
    fn default() -> Self {
        FreeList {
            free: Vec::new(),
            slots: Vec::with_capacity(8 << 10),
        }
    }
}

impl<T> FreeList<T> {
    pub(crate) fn alloc(&mut self, item: T) -> Idx<T> {
        match self.free.pop() {
            Some(raw) => {
                let idx = Idx::from_raw(raw as usize);
                let slot = &mut self.slots[idx.to_raw()];
                debug_assert!(slot.is_none());
                *slot = Some(item);
                idx
            }
            None => {
                let idx = Idx::from_raw(self.slots.len());
                self.slots.push(Some(item));
                idx
            }
        }
    }
    pub(crate) fn dealloc(&mut self, idx: Idx<T>) -> T {
        let item = self.slots[idx.to_raw()].take().expect("freed twice");
        self.free
            .push(u32::try_from(idx.to_raw()).expect("fewer than 2^32 slots"));
        item
    }
}

impl<T> ops::Index<Idx<T>> for FreeList<T> {
    type Output = T;

    fn index(&self, idx: Idx<T>) -> &T {
        match &self.slots[idx.to_raw()] {
            None => unreachable!(),
            Some(item) => item,
        }
    }
}

impl<T> ops::IndexMut<Idx<T>> for FreeList<T> {
    fn index_mut(&mut self, idx: Idx<T>) -> &mut T {
        match &mut self.slots[idx.to_raw()] {
            None => unreachable!(),
            Some(item) => item,
        }
    }
}

#[test]
fn free_list_smoke_test() {
    let mut free_list: FreeList<&str> = FreeList::default();

    let hello = free_list.alloc("hello");
    assert_eq!(hello, Idx::from_raw(0));

    let world = free_list.alloc("world");
    assert_eq!(world, Idx::from_raw(1));

    assert_eq!(free_list[hello], "hello");
    assert_eq!(free_list[world], "world");

    free_list.dealloc(hello);

    let goodbye = free_list.alloc("goodbye");
    assert_eq!(goodbye, Idx::from_raw(0));

    free_list.dealloc(goodbye);
    free_list.dealloc(world);

    let a = free_list.alloc("a");
    let b = free_list.alloc("b");
    let c = free_list.alloc("c");
    assert_eq!(a, Idx::from_raw(1));
    assert_eq!(b, Idx::from_raw(0));
    assert_eq!(c, Idx::from_raw(2));
}
